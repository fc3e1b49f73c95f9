"""The Tansu broker fixture of the Kafka tests, for the audit's kafka:// input."""

from tests.kafka.conftest import kafka_broker

__all__ = ["kafka_broker"]
