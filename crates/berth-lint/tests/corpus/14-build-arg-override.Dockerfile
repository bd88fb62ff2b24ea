ARG BASE=localhost:5000/gallery/base:2.1
FROM ${BASE}
RUN make
