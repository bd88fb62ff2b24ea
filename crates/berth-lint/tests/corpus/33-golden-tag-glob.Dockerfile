FROM localhost:5000/gallery/base:2.1 AS a
FROM localhost:5000/gallery/base:2.1-slim AS b
FROM localhost:5000/gallery/base:3.0 AS c
FROM localhost:5000/gallery/base:12.0 AS d
FROM localhost:5000/gallery/base:v2.1
