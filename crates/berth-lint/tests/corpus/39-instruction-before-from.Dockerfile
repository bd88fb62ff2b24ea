ARG TAG=2.1
LABEL maintainer="platform@example.com"
FROM localhost:5000/gallery/base:${TAG}
