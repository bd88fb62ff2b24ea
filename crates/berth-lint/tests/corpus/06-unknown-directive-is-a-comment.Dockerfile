# unknowndirective=value
# escape=`
FROM localhost:5000/gallery/base:2.1 AS app
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl \
 && rm -rf /var/lib/apt/lists/*
