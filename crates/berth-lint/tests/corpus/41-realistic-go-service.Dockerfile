# syntax=docker/dockerfile:1.7

ARG GO_VERSION=1.22.5
ARG DISTROLESS=gcr.io/distroless/static-debian12:nonroot

FROM --platform=$BUILDPLATFORM localhost:5000/gallery/golang:${GO_VERSION} AS build
WORKDIR /src
ENV CGO_ENABLED=0
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=bind,source=go.sum,target=go.sum \
    --mount=type=bind,source=go.mod,target=go.mod \
    go mod download -x
ARG TARGETOS
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    --mount=type=bind,target=. \
    GOOS=$TARGETOS GOARCH=$TARGETARCH go build -ldflags="-s -w" -o /out/berth-demo ./cmd/demo

FROM build AS test
RUN --mount=type=cache,target=/go/pkg/mod go test ./...

FROM ${DISTROLESS} AS final
COPY --from=build /out/berth-demo /usr/local/bin/berth-demo
EXPOSE 8080
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/berth-demo"]
