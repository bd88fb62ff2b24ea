FROM localhost:5000/gallery/base:2.1
RUN make
FORM localhost:5000/gallery/base:2.1
