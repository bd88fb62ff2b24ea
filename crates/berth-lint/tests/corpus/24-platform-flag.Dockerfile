ARG GO_VERSION=1.22
FROM --platform=$BUILDPLATFORM localhost:5000/gallery/golang:${GO_VERSION} AS build
ARG TARGETOS TARGETARCH
RUN GOOS=$TARGETOS GOARCH=$TARGETARCH go build -o /out/app .

FROM --platform=linux/amd64 localhost:5000/gallery/base:2.1-${TARGETARCH}
COPY --from=build /out/app /app
