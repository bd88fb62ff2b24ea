ARG REGISTRY="localhost:5000" REPO='gallery/base' TAG=2.1
FROM ${REGISTRY}/${REPO}:${TAG}
