FROM localhost:5000/gallery/base:2.1
COPY --from=localhost:5000/gallery/tools:1.4 /usr/bin/jq /usr/bin/jq
COPY --from=localhost:5000/gallery/tools:1.4@sha256:9a3f1b7e8c2d4f60a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718 /usr/bin/yq /usr/bin/yq
