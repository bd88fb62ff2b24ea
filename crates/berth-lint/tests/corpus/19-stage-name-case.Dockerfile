FROM localhost:5000/gallery/golang:1.22 AS Builder
RUN go build -o /out/app .

FROM builder AS test
RUN go test ./...

FROM Builder AS debug
COPY --from=BUILDER /out/app /app
