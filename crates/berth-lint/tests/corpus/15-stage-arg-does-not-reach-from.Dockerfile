FROM localhost:5000/gallery/base:2.1 AS base
ARG RUNTIME_TAG=2.1
RUN echo "$RUNTIME_TAG"

FROM localhost:5000/gallery/runtime:${RUNTIME_TAG}
COPY --from=base /etc/ssl /etc/ssl
