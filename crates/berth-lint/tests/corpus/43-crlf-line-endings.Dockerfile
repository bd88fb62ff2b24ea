FROM localhost:5000/gallery/base:2.1 AS base
RUN apt-get update \
 && apt-get install -y make

FROM debian:12-slim
COPY --from=base /usr/bin/make /usr/bin/make
