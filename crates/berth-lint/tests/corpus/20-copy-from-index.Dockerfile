FROM localhost:5000/gallery/golang:1.22
RUN go build -o /out/app .

FROM localhost:5000/gallery/base:2.1
COPY --from=0 /out/app /app
COPY --from=1 /etc/passwd /etc/passwd
COPY --from=7 /x /x
