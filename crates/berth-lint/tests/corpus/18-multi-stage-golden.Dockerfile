FROM localhost:5000/gallery/golang:1.22.4 AS builder
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -o /out/server ./cmd/server

FROM localhost:5000/gallery/base:2.1 AS runtime
COPY --from=builder /out/server /usr/local/bin/server
USER 65532:65532
ENTRYPOINT ["server"]
