# syntax=docker/dockerfile:1
FROM localhost:5000/gallery/base:2.1
RUN <<EOF
FROM ubuntu:latest
apt-get update
EOF
COPY <<"CONF" /etc/app.conf
FROM debian:12
listen = 8080
CONF
RUN <<-SCRIPT bash
	FROM alpine
	echo tab-indented
	SCRIPT
RUN cat <<ONE <<'TWO' > /tmp/both
FROM one:1
ONE
FROM two:2
TWO
RUN 3<<IN cat
FROM three:3
IN
FROM nginx:1.25
