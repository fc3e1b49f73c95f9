"""Fixtures: a real Kafka-protocol broker (Tansu) on a free loopback port."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.kafka_broker import KafkaBroker


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    """One broker for the session; tests keep apart by using their own topics and groups."""
    broker = KafkaBroker().start()
    yield broker
    broker.stop()


@pytest.fixture
def kafka_broker_factory() -> Iterator[Callable[[], KafkaBroker]]:
    """Brokers of a test's own (to stop and restart); all stopped at the end."""
    started: list[KafkaBroker] = []

    def make() -> KafkaBroker:
        b = KafkaBroker().start()
        started.append(b)
        return b

    yield make
    for b in started:
        b.stop()
