FROM bitnami/redis:7.2.4 AS cache
FROM grafana/grafana:10.4.1
