ARG PY_VERSION
ARG VARIANT
ARG SUFFIX=
ARG USE_MIRROR=1
FROM localhost:5000/gallery/python:${PY_VERSION:-3.12}-${VARIANT:-slim}${SUFFIX-unused} AS app
FROM ${USE_MIRROR:+localhost:5000/mirror/}alpine:3.19 AS tools
FROM localhost:5000/gallery/python:${SUFFIX:-3.11}${NOT_DECLARED+-never}
