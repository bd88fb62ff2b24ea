FROM localhost:5000/gallery/golang:1.22 AS
RUN go build
