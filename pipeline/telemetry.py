"""Self-telemetry: Prometheus metrics (prometheus-client) and logging.

Standard metrics keep the OTel Collector's names (`otelcol_receiver_accepted_spans`, ...)
and labels, so existing dashboards work; our own start with `tracesieve_`. Counters are
bumped once per batch, never per span. Components take pre-bound children at creation.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics import MetricWrapperBase

SIGNAL = "traces"
disable_created_metrics()  # no `_created` series: the OTel Collector has none


class Telemetry:
    """Owns the metric registry of one running collector."""

    def __init__(self, level: str = "normal") -> None:
        self.level = level
        self.registry = CollectorRegistry(auto_describe=False)
        self._metrics: dict[str, MetricWrapperBase] = {}
        # python_gc_{collections,objects_collected,objects_uncollectable}_total{generation}
        GCCollector(registry=self.registry)

    def _get(self, cls: type[Any], name: str, doc: str, labels: tuple[str, ...], **kw: Any) -> Any:
        metric = self._metrics.get(name)
        if metric is None:
            metric = cls(name, doc, labels, registry=self.registry, **kw)
            self._metrics[name] = metric
        return metric

    def counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        return self._get(Counter, name, doc, labels)  # type: ignore[no-any-return]

    def gauge(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return self._get(Gauge, name, doc, labels)  # type: ignore[no-any-return]

    def histogram(
        self, name: str, doc: str, labels: tuple[str, ...] = (), buckets: tuple[float, ...] = ()
    ) -> Histogram:
        kw = {"buckets": buckets} if buckets else {}
        return self._get(Histogram, name, doc, labels, **kw)  # type: ignore[no-any-return]

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    # -- the standard per-component families ------------------------------------------
    def receiver(self, receiver: str, transport: str) -> ReceiverMetrics:
        labels = (receiver, transport)
        names = ("receiver", "transport")
        req = self.counter(
            "otelcol_receiver_requests",
            "Requests received, by outcome",
            (*names, "outcome"),
        )
        return ReceiverMetrics(
            accepted=self.counter(
                "otelcol_receiver_accepted_spans", "Spans pushed into the pipeline", names
            ).labels(*labels),
            refused=self.counter(
                "otelcol_receiver_refused_spans",
                "Spans that could not be pushed into the pipeline",
                names,
            ).labels(*labels),
            requests={
                o: req.labels(*labels, o)
                for o in (
                    "success",
                    "refused",
                    "invalid",
                    "too_large",
                    "unauthenticated",
                    "failure",
                )
            },
        )

    def processor(self, processor: str, pipeline: str) -> ProcessorMetrics:
        names = ("processor", "pipeline", "otel_signal")
        labels = (processor, pipeline, SIGNAL)
        return ProcessorMetrics(
            incoming=self.counter(
                "otelcol_processor_incoming_items", "Items passed to the processor", names
            ).labels(*labels),
            outgoing=self.counter(
                "otelcol_processor_outgoing_items", "Items emitted by the processor", names
            ).labels(*labels),
            dropped=self.counter(
                "otelcol_processor_dropped_spans",
                "Spans dropped by the processor (by design: sampling, filtering)",
                names,
            ).labels(*labels),
        )

    def exporter(self, exporter: str) -> ExporterMetrics:
        names = ("exporter",)
        return ExporterMetrics(
            sent=self.counter(
                "otelcol_exporter_sent_spans", "Spans successfully sent", names
            ).labels(exporter),
            send_failed=self.counter(
                "otelcol_exporter_send_failed_spans",
                "Spans that failed to send (after retries, or permanently)",
                names,
            ).labels(exporter),
            enqueue_failed=self.counter(
                "otelcol_exporter_enqueue_failed_spans",
                "Spans refused because the sending queue was full",
                names,
            ).labels(exporter),
            queue_size=self.gauge(
                "otelcol_exporter_queue_size", "Current size of the sending queue", names
            ).labels(exporter),
            queue_capacity=self.gauge(
                "otelcol_exporter_queue_capacity", "Capacity of the sending queue", names
            ).labels(exporter),
            in_flight=self.gauge(
                "otelcol_exporter_in_flight_requests", "Requests being sent now", names
            ).labels(exporter),
        )


@dataclass(frozen=True)
class ReceiverMetrics:
    accepted: Any
    refused: Any
    requests: dict[str, Any]


@dataclass(frozen=True)
class ProcessorMetrics:
    incoming: Any
    outgoing: Any
    dropped: Any


@dataclass(frozen=True)
class ExporterMetrics:
    sent: Any
    send_failed: Any
    enqueue_failed: Any
    queue_size: Any
    queue_capacity: Any
    in_flight: Any


class RateLimiter:
    """Lets each key through at most once per `interval` seconds (the last time of at most
    1000 keys is remembered)."""

    __slots__ = ("_last", "interval")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: dict[Hashable, float] = {}

    def allow(self, key: Hashable = "") -> bool:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            return False
        if len(self._last) >= 1000:
            self._last.clear()
        self._last[key] = now
        return True


class RateLimitedLog:
    """Warnings about what can happen per batch or per request (a backend down, data
    refused) without flooding the log: at most one per `interval` seconds per `key` (a
    kind of problem; by default all share one); those held back go to DEBUG."""

    __slots__ = ("_limiter", "logger")

    def __init__(self, logger: logging.Logger, interval: float = 1.0) -> None:
        self.logger = logger
        self._limiter = RateLimiter(interval)

    def warning(self, msg: str, *args: object, key: str = "") -> None:
        if self._limiter.allow(key):
            self.logger.warning(msg, *args)
        elif self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug(msg, *args)


def setup_logging(level: str = "info", encoding: str = "console") -> None:
    lvl = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING}.get(
        level, logging.ERROR if level == "error" else logging.INFO
    )
    handler = logging.StreamHandler(sys.stderr)
    if encoding == "json":
        fmt = '{"ts":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":%(message)r}'
    else:
        fmt = "%(asctime)s %(levelname)-5s %(name)s: %(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(lvl)
    # libraries are loud at INFO
    for name in ("aiokafka", "kafka", "aiohttp.access", "grpc"):
        logging.getLogger(name).setLevel(max(lvl, logging.WARNING))
