FROM localhost:5000/gallery/golang:1.22 AS builder
RUN go build -o /out/app .

FROM localhost:5000/gallery/base:2.1
COPY --from=buidler /out/app /app
COPY --from=test /report /report

FROM builder AS test
RUN go test ./... > /report
