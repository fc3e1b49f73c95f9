"""The one list of every component tracesieve has. Add a factory here to make it usable."""

from __future__ import annotations

from pipeline.component import AnyFactory, Kind, Registry
from pipeline.connectors import forward, routing
from pipeline.exporters import dataset, debug, file, kafka, live_view, otlp, otlp_http
from pipeline.extensions import health_check, oauth2client
from pipeline.receivers import kafka as kafka_receiver
from pipeline.receivers import otlp as otlp_receiver
from processors import (
    attributes,
    batch,
    cache_tagging,
    cleanliness,
    fallback_chain,
    groupbytrace,
    memory_limiter,
    provider_reconciliation,
    tail_sampling,
)

RECEIVERS = (otlp_receiver.factory, kafka_receiver.factory)
PROCESSORS = (
    batch.factory,
    memory_limiter.factory,
    attributes.factory,
    groupbytrace.factory,
    provider_reconciliation.factory,
    cache_tagging.factory,
    fallback_chain.factory,
    cleanliness.factory,
    tail_sampling.factory,
)
EXPORTERS = (
    otlp.factory,
    otlp_http.factory,
    file.factory,
    debug.factory,
    kafka.factory,
    live_view.factory,
    dataset.factory,
)
CONNECTORS = (forward.factory, routing.factory)
EXTENSIONS = (health_check.factory, oauth2client.factory)


def build() -> Registry:
    reg = Registry()
    groups: tuple[tuple[Kind, tuple[AnyFactory, ...]], ...] = (
        ("receiver", RECEIVERS),
        ("processor", PROCESSORS),
        ("exporter", EXPORTERS),
        ("connector", CONNECTORS),
        ("extension", EXTENSIONS),
    )
    for kind, factories in groups:
        for f in factories:
            reg.add(kind, f)
    return reg


REGISTRY = build()
