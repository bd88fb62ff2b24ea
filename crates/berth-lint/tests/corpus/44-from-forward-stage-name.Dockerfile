FROM runtime AS dev
RUN echo dev

FROM localhost:5000/gallery/base:2.1 AS runtime
