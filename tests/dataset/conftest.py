"""The Tansu broker fixture of the Kafka tests, for the dataset exporter's at-least-once test."""

from tests.kafka.conftest import kafka_broker

__all__ = ["kafka_broker"]
