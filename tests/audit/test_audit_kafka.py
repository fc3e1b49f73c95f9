"""A Kafka topic on a real broker (Tansu), read from the start by `tracesieve audit
kafka://HOST:PORT/TOPIC`: every message up to the end offsets found at the start, OTLP
protobuf and OTLP JSON alike, in no consumer group."""

from __future__ import annotations

from typing import Any

from pipeline import otlpjson
from tests.audit.helpers import (
    audit,
    classes,
    config_with_schemas,
    generated,
    reasons,
    report,
    requests_of,
    truth_classes,
    truth_reasons,
)
from tests.kafka.helpers import create_topic, produce, unique


def test_a_topic_is_audited_from_the_start(kafka_broker: Any, tmp_path) -> None:
    traces = generated(120, seed=31)
    reqs = requests_of(traces, per_request=8)
    topic = unique("audit")
    create_topic(kafka_broker.bootstrap, topic, partitions=3)
    # spread over the partitions, half as protobuf and half as OTLP JSON (as the kafka
    # exporter writes with encoding otlp_proto / otlp_json), plus a message that is neither
    values = [
        r.SerializeToString() if i % 2 else otlpjson.encode(r) for i, r in enumerate(reqs)
    ] + [b"\x0a\x03\xff\xff\xff"]
    produce(kafka_broker.bootstrap, topic, values, partitions=[i % 3 for i in range(len(values))])
    out = tmp_path / "r.json"
    res = audit(
        f"kafka://{kafka_broker.bootstrap}/{topic}",
        *config_with_schemas(tmp_path),
        "--report-json",
        str(out),
        "--quiet",
    )
    assert res.returncode == 0, res.stderr
    rep = report(out)
    assert rep["inputs"][0]["format"] == "kafka"
    assert rep["inputs"][0]["messages"] == len(values)
    assert rep["totals"]["traces"] == len(traces)
    assert classes(rep) == truth_classes(traces)
    assert reasons(rep) == truth_reasons(traces)
    p = rep["problems"]
    assert p["bad_frames"] == 1
    last = len(values) - 1  # the bad one: partition last % 3, offset last // 3
    assert p["examples"][0]["where"] == (
        f"kafka://{kafka_broker.bootstrap}/{topic}: partition {last % 3} offset {last // 3}"
    )
    assert "1 bad frames" in res.stderr


def test_a_broker_that_does_not_answer_is_a_one_line_error(tmp_path) -> None:
    from tests.kafka_broker import free_port

    res = audit(f"kafka://127.0.0.1:{free_port()}/traces", "--quiet", timeout=120)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert "cannot read" in res.stderr


def test_sasl_comes_from_the_configs_kafka_receiver(kafka_broker: Any, tmp_path) -> None:
    """The first kafka receiver of --config gives kafka:// inputs their SASL (and TLS): a
    broker that offers no SASL (Tansu without --authentication) then refuses the audit,
    which says so in one line."""
    topic = unique("audit-sasl")
    create_topic(kafka_broker.bootstrap, topic, partitions=1)
    sasl = "yaml:receivers::kafka::auth::sasl: {username: auditor, password: pw, mechanism: SCRAM-SHA-256}"
    res = audit(
        f"kafka://{kafka_broker.bootstrap}/{topic}",
        "--config",
        "configs/local.yaml",
        "--config",
        sasl,
        "--quiet",
        timeout=120,
    )
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert "cannot read" in res.stderr
    # and without it, the same topic is read
    res = audit(
        f"kafka://{kafka_broker.bootstrap}/{topic}", "--config", "configs/local.yaml", "--quiet"
    )
    assert res.returncode == 0, res.stderr
