FROM localhost:5000/gallery/base:2.1@sha256:4ff3ca91275773af45cb4b0834e12b7eb47d1c18f770a0b151381cd227f4c253 AS base
FROM localhost:5000/gallery/tools@sha256:9a3f1b7e8c2d4f60a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718 AS tools
FROM base
COPY --from=tools /usr/bin/jq /usr/bin/jq
