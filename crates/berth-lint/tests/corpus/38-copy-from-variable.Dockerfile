ARG BUILDER=build
FROM localhost:5000/gallery/golang:1.22 AS build
FROM localhost:5000/gallery/base:2.1
COPY --from=${BUILDER} /out /out
