# syntax=docker/dockerfile:1.7
# check=skip=JSONArgsRecommended
FROM localhost:5000/gallery/base:2.1 AS app
COPY --link . /app
ENTRYPOINT /app/run.sh
