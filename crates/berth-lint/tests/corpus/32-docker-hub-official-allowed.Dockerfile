FROM golang:1.22.3-alpine AS a
FROM library/golang:1.22 AS b
FROM index.docker.io/library/golang:1.22 AS c
FROM docker.io/golang:1.22rc1 AS d
FROM golang:1.21
