FROM localhost:5000/gallery/base:2.1
RUN <<EOF
set -e
make install
EOF-not-quite
