# tracesieve in a container. Build and run:
#   docker build -t tracesieve:0.1.0 .
#   docker run --rm -p 4317:4317 -p 4318:4318 -p 8888:8888 -p 13133:13133 tracesieve:0.1.0
# The default config is configs/local.yaml (spans to /var/lib/tracesieve/spans.jsonl);
# as a sidecar forwarding upstream:
#   docker run ... -e TRACESIEVE_UPSTREAM=gateway:4317 tracesieve:0.1.0 --config /app/configs/sidecar-otlp.yaml
# the two tiers over Kafka (docs/deploy.md#the-two-tier-topology):
#   docker run ... -e TRACESIEVE_KAFKA_BROKERS=kafka:9092 tracesieve:0.1.0 --config /app/configs/sidecar.yaml
#   docker run ... -e TRACESIEVE_KAFKA_BROKERS=kafka:9092 tracesieve:0.1.0 --config /app/configs/gateway.yaml
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY processors ./processors
COPY configs ./configs
RUN pip install . \
    && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent tracesieve \
    && mkdir -p /var/lib/tracesieve \
    && chown tracesieve:tracesieve /var/lib/tracesieve

# in a container, listen on every interface (the configs default to 127.0.0.1)
ENV TRACESIEVE_GRPC_ENDPOINT=0.0.0.0:4317 \
    TRACESIEVE_HTTP_ENDPOINT=0.0.0.0:4318 \
    TRACESIEVE_METRICS_ENDPOINT=0.0.0.0:8888 \
    TRACESIEVE_HEALTH_ENDPOINT=0.0.0.0:13133 \
    TRACESIEVE_OUTPUT=/var/lib/tracesieve/spans.jsonl

USER 10001:10001
WORKDIR /var/lib/tracesieve
EXPOSE 4317 4318 8888 13133
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:13133/', timeout=2)"]
# tracesieve is PID 1 and handles SIGTERM itself: it drains within service.shutdown_timeout
ENTRYPOINT ["tracesieve", "run"]
CMD ["--config", "/app/configs/local.yaml"]
