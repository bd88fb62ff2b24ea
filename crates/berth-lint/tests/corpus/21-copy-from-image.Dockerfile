FROM localhost:5000/gallery/base:2.1
COPY --from=nginx:1.25 /etc/nginx/nginx.conf /etc/nginx/nginx.conf
COPY --from=localhost:5000/gallery/tools:1.4 /usr/bin/jq /usr/bin/jq
COPY --from=docker.io/library/busybox /bin/busybox /bin/busybox
