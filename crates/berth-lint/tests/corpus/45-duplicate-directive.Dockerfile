# syntax=docker/dockerfile:1
# syntax=docker/dockerfile:1.7
FROM localhost:5000/gallery/base:2.1
