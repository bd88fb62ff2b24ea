FROM localhost:5000/gallery/base:2.1
ONBUILD RUN <<EOF
FROM evil:latest
EOF
ONBUILD COPY --from=somewhere:1 /x /x
