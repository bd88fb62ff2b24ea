FROM Ubuntu:22.04 AS a
FROM alpine@sha256:1234 AS b
FROM localhost:5000/gallery/base:2.1
COPY --from=localhost:5000/gallery/Tools:1 /x /x
