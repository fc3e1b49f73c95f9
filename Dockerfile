# tracesieve in a container. Build and run:
#   docker build -t tracesieve:0.1.0 .
#   docker run --rm -p 4317:4317 -p 4318:4318 -p 8888:8888 -p 13133:13133 tracesieve:0.1.0
# The default config is configs/local.yaml (spans to /var/lib/tracesieve/spans.jsonl);
# as a sidecar forwarding upstream:
#   docker run ... -e TRACESIEVE_UPSTREAM=gateway:4317 tracesieve:0.1.0 --config /app/configs/sidecar-otlp.yaml
# the two tiers over Kafka (docs/deploy.md#the-two-tier-topology):
#   docker run ... -e TRACESIEVE_KAFKA_BROKERS=kafka:9092 tracesieve:0.1.0 --config /app/configs/sidecar.yaml
#   docker run ... -e TRACESIEVE_KAFKA_BROKERS=kafka:9092 tracesieve:0.1.0 --config /app/configs/gateway.yaml
#
# Two stages: `build` has a C compiler and builds the wheel with the native parts (the C
# wire scanner and the mypyc-compiled modules, setup.py); the runtime stage is slim and
# installs that wheel, so the image runs the code the test suite runs. The build stops if
# the wheel lacks a native module (setup.py makes them optional, for machines without a
# compiler). tests/test_image.py builds the wheel from exactly the files this stage
# copies; docs/internals/testing.md says more.
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY pipeline ./pipeline
COPY processors ./processors
COPY benchmarks ./benchmarks
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && python -m pipeline.native --check-wheel /wheels/tracesieve-*.whl

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY --from=build /wheels /tmp/wheels
RUN pip install /tmp/wheels/tracesieve-*.whl \
    && rm -rf /tmp/wheels \
    && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent tracesieve \
    && mkdir -p /var/lib/tracesieve \
    && chown tracesieve:tracesieve /var/lib/tracesieve
COPY configs ./configs

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
