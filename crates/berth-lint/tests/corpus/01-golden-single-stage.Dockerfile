FROM localhost:5000/gallery/base:2.1

WORKDIR /app
COPY . .
RUN ./configure && make install
USER 1000
CMD ["/app/bin/server"]
