FROM localhost:5000/gallery/base:2.1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN ["sh", "-c", "cat <<EOF"]
FROM localhost:5000/gallery/tools:1.4
HEALTHCHECK --interval=30s CMD ["curl", "-f", "http://localhost/"]
ENV A=1 B="two words"
LABEL org.opencontainers.image.source="https://example.com/x"
EXPOSE 8080/tcp
VOLUME ["/data"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["tini", "--"]
CMD app --serve
