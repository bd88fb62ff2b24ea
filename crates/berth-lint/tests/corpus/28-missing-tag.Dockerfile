FROM localhost:5000/gallery/base
FROM alpine
