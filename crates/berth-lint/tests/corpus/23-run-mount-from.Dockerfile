FROM localhost:5000/gallery/golang:1.22 AS builder
RUN --mount=type=cache,target=/root/.cache/go-build \
    --mount=type=bind,source=.,target=/src \
    go build -o /out/app /src
RUN --mount=type=bind,from=golang:1.22,source=/usr/local/go,target=/opt/go ls /opt/go
RUN --mount=type=cache,from=localhost:5000/gallery/cache-seed:1,target=/seed \
    --mount=type=tmpfs,from=ignored:1,target=/tmp/scratch true

FROM localhost:5000/gallery/base:2.1
RUN --mount=from=builder,source=/out/app,target=/mnt/app cp /mnt/app /app
RUN --mount=from=0,source=/out,target=/out true
RUN --mount=type=secret,id=npmrc,target=/root/.npmrc true
