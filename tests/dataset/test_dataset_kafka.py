"""At least once, on a real Kafka-protocol broker (Tansu): a gateway (Kafka receiver ->
groupbytrace -> enrichment -> cleanliness -> `dataset`) commits a message's offset only
once the examples of its trace are written. It is killed mid-stream (SIGKILL); every
message the group had committed by then has its example in the file the killed gateway
left; the next gateway takes the rest up, and each trace's example is written once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.generator import FaultRates, Generator
from pipeline.testing import wait_for
from tests.dataset.validators import read_lines
from tests.kafka.helpers import (
    committed,
    create_topic,
    kafka_receiver,
    produce,
    read_topics,
    unique,
)


def gateway(bs: str, topic: str, group: str, path: str) -> dict[str, Any]:
    enrich = ["provider_reconciliation", "cache_tagging", "fallback_chain"]
    return {
        "receivers": {"kafka": kafka_receiver(bs, topic, group, autocommit={"interval": "100ms"})},
        "processors": {
            "groupbytrace": {"wait_duration": "300ms", "wait_duration_after_root": "100ms"},
            **{p: {} for p in enrich},
            "cleanliness": {},
        },
        "exporters": {"dataset": {"path": path}},
        "service": {
            "pipelines": {
                "traces": {
                    "receivers": ["kafka"],
                    "processors": ["groupbytrace", *enrich, "cleanliness"],
                    "exporters": ["dataset"],
                }
            },
            "telemetry": {"metrics": {"level": "none"}},
        },
    }


def written(path: Path) -> list[str]:
    """Trace ids of the complete provenance lines in a file (none if it is absent)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_bytes().splitlines(keepends=True):
        if line.endswith(b"\n"):
            out.append(json.loads(line)["trace_id"])
    return out


def test_offsets_are_committed_only_for_written_examples(tmp_path, kafka_broker, collector_factory):
    bs = kafka_broker.bootstrap
    topic, group = unique("dataset"), unique("gw")
    create_topic(bs, topic, partitions=2)
    traces = list(Generator(31, content=True, rates=FaultRates.none()).traces(60))
    values = [t.request().SerializeToString() for t in traces]
    out = tmp_path / "train.jsonl"
    prov_partial = tmp_path / "train.provenance.jsonl.partial"
    cfg = gateway(bs, topic, group, str(out))

    def committed_count() -> int:
        return sum(o or 0 for o in committed(bs, group, topic, 2).values())

    g1 = collector_factory(cfg, workdir=str(tmp_path / "g1"))
    produce(bs, topic, values[:20])
    assert wait_for(lambda: committed_count() > 0, timeout=60), g1.output
    produce(bs, topic, values[20:40])
    g1.kill()  # mid-stream: whatever it had not committed is read again by the next one
    done = set(written(prov_partial))
    offsets = committed(bs, group, topic, 2)
    records = read_topics(bs, [topic], until=40)
    assert len(records) == 40
    committed_traces = {
        traces[values.index(r.value)].truth["trace_id"]
        for r in records
        if offsets[r.partition] is not None and r.offset < offsets[r.partition]  # type: ignore[operator]
    }
    assert committed_traces, "nothing was committed before the kill"
    assert committed_traces <= done, f"{len(committed_traces - done)} committed, not written"

    g2 = collector_factory(cfg, workdir=str(tmp_path / "g2"))
    produce(bs, topic, values[40:])
    want = {t.truth["trace_id"] for t in traces}
    assert wait_for(lambda: set(written(prov_partial)) == want, timeout=90), g2.output
    ends = {
        p: sum(1 for r in read_topics(bs, [topic], until=60) if r.partition == p) for p in (0, 1)
    }
    assert wait_for(lambda: committed(bs, group, topic, 2) == ends, timeout=30)
    assert g2.stop() == 0
    prov = read_lines(str(tmp_path / "train.provenance.jsonl"))
    assert sorted(p["trace_id"] for p in prov) == sorted(want)  # each once
    assert len(read_lines(str(out))) == len(prov)
