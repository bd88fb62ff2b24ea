FROM localhost:5000/gallery/base:2.1
COPY --from=localhost:5000/gallery/tools:1.4 /x /x
