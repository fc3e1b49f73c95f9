"""The attributes processor: the OTel Collector's actions and include/exclude matching."""

from __future__ import annotations

import hashlib
import struct

import pytest
import yaml

from pipeline import config as config_mod
from pipeline.configtypes import decode
from pipeline.errors import ConfigError
from pipeline.registry import REGISTRY
from pipeline.testing import Sink, attrs, make_span, make_traces, settings
from processors.attributes import AttributesConfig, create

TID = b"\x01" * 16


def build(cfg: dict):  # type: ignore[no-untyped-def]
    value, errs = decode(cfg, AttributesConfig, "processors::attributes")
    assert not errs, errs
    sink = Sink(mutates_data=True)
    return create(settings("processor", "attributes"), value, sink), sink


def span(name="s", sid=1, **a):  # type: ignore[no-untyped-def]
    return make_span(name, TID, sid.to_bytes(8, "big"), attributes=a)


async def run(cfg: dict, *spans, service="svc"):  # type: ignore[no-untyped-def]
    proc, sink = build(cfg)
    traces = make_traces(spans, service=service)
    await proc.consume_traces(traces)
    return [attrs(s) for s in sink.spans()], traces


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


async def test_insert_update_upsert():
    cfg = {
        "actions": [
            {"key": "a", "value": "new", "action": "insert"},  # a exists: no change
            {"key": "b", "value": 2, "action": "insert"},
            {"key": "c", "value": True, "action": "update"},  # c absent: no change
            {"key": "a", "value": 1.5, "action": "UPDATE"},  # case-insensitive
            {"key": "d", "value": ["x", 1], "action": "upsert"},
            {"key": "e", "from_attribute": "a", "action": "upsert"},
            {"key": "f", "from_attribute": "missing", "action": "insert"},
            {"key": "g", "from_attribute": "missing", "default_value": "dflt", "action": "insert"},
        ]
    }
    (got,), _ = await run(cfg, span(a="old"))
    assert got == {"a": 1.5, "b": 2, "d": ["x", 1], "e": 1.5, "g": "dflt"}


async def test_delete_by_key_and_pattern_removes_every_copy():
    s = span(**{"gen_ai.input.messages": "[prompt]", "keep": 1, "input.value": "p"})
    dup = s.attributes.add(key="gen_ai.input.messages")  # duplicate keys happen on the wire
    dup.value.string_value = "again"
    cfg = {
        "actions": [
            {"key": "gen_ai.input.messages", "action": "delete"},
            {"pattern": r"^(input|output)\.value$", "action": "delete"},
            {"key": "absent", "action": "delete"},
        ]
    }
    (got,), _ = await run(cfg, s)
    assert got == {"keep": 1}


async def test_hash_is_sha256_hex_of_the_otel_collector_bytes():
    cfg = {
        "actions": [
            {"key": k, "action": "hash"} for k in ("str", "int", "dbl", "flag", "raw", "list")
        ]
    }
    s = span(str="alice@example.com", int=42, dbl=1.5, flag=True, raw=b"\x00\x01", list=[1])
    (got,), _ = await run(cfg, s)
    assert got["str"] == sha(b"alice@example.com")
    assert got["int"] == sha(struct.pack("<q", 42))
    assert got["dbl"] == sha(struct.pack("<d", 1.5))
    assert got["flag"] == sha(b"\x01")
    assert got["raw"] == "" and got["list"] == ""  # as the OTel Collector does
    # a known vector: sha256("alice@example.com")
    assert got["str"] == "ff8d9819fc0e12bf0d24892e45987e249a28dce836a85cad60e28eaaa8c6d976"


async def test_hash_by_pattern():
    cfg = {"actions": [{"pattern": "^user\\.", "action": "hash"}]}
    (got,), _ = await run(cfg, span(**{"user.id": "u1", "user.name": "n", "other": "o"}))
    assert got == {"user.id": sha(b"u1"), "user.name": sha(b"n"), "other": "o"}


async def test_extract_and_convert():
    cfg = {
        "actions": [
            {
                "key": "http.url",
                "pattern": r"^(?P<scheme>\w+)://(?P<host>[^/:]+)(?::(?P<port>\d+))?",
                "action": "extract",
            },
            {"key": "n", "action": "convert", "converted_type": "int"},
            {"key": "d", "action": "convert", "converted_type": "double"},
            {"key": "s", "action": "convert", "converted_type": "string"},
            {"key": "bad", "action": "convert", "converted_type": "int"},
            {"key": "f", "action": "convert", "converted_type": "int"},
        ]
    }
    s = span(
        **{"http.url": "https://api.x.ai/v1", "n": "17", "d": 3, "s": 2.5, "bad": "1_0", "f": 9.9}
    )
    (got,), _ = await run(cfg, s)
    assert got["scheme"] == "https" and got["host"] == "api.x.ai" and got["port"] == ""
    assert got["n"] == 17 and got["d"] == 3.0 and isinstance(got["d"], float)
    assert got["s"] == "2.5" and got["bad"] == "1_0" and got["f"] == 9


async def test_include_exclude():
    cfg = {
        "include": {
            "match_type": "strict",
            "services": ["agent"],
            "span_kinds": ["SPAN_KIND_CLIENT"],
        },
        "exclude": {
            "match_type": "regexp",
            "span_names": ["^health"],
            "attributes": [{"key": "keep.prompt", "value": "^yes$"}],
        },
        "actions": [{"key": "gen_ai.input.messages", "action": "delete"}],
    }
    P = "gen_ai.input.messages"
    client = 3
    spans = [
        make_span("chat", TID, b"\0" * 7 + b"\1", kind=client, attributes={P: "x"}),
        make_span("chat", TID, b"\0" * 7 + b"\2", kind=1, attributes={P: "x"}),  # not CLIENT
        make_span(
            "health", TID, b"\0" * 7 + b"\3", kind=client, attributes={P: "x", "keep.prompt": "yes"}
        ),
        make_span(
            "health", TID, b"\0" * 7 + b"\4", kind=client, attributes={P: "x"}
        ),  # exclude needs both
    ]
    got, _ = await run(cfg, *spans, service="agent")
    assert [P in a for a in got] == [False, True, True, False]
    other, _ = await run(cfg, *spans, service="someone-else")
    assert all(P in a for a in other)


async def test_attribute_match_strict_is_typed_and_regexp_uses_text():
    strict = {
        "include": {"match_type": "strict", "attributes": [{"key": "code", "value": 200}]},
        "actions": [{"key": "hit", "value": True, "action": "insert"}],
    }
    got, _ = await run(strict, span(sid=1, code=200), span(sid=2, code="200"), span(sid=3))
    assert ["hit" in a for a in got] == [True, False, False]
    rx = {
        "include": {"match_type": "regexp", "attributes": [{"key": "code", "value": "^2"}]},
        "actions": [{"key": "hit", "value": True, "action": "insert"}],
    }
    got, _ = await run(rx, span(sid=1, code=200), span(sid=2, code="201"), span(sid=3, code=500))
    assert ["hit" in a for a in got] == [True, True, False]


async def test_untouched_batch_keeps_its_bytes():
    proc, sink = build({"actions": [{"key": "absent", "action": "delete"}]})
    raw = make_traces([span(a=1)]).to_bytes()
    from pipeline.pdata import Traces

    t = Traces.decode(raw)
    await proc.consume_traces(t)
    assert sink.batches[0].to_bytes() is raw
    proc2, sink2 = build({"actions": [{"key": "a", "action": "delete"}]})
    t2 = Traces.decode(raw)
    await proc2.consume_traces(t2)
    assert sink2.batches[0].to_bytes() != raw


@pytest.mark.parametrize(
    ("action", "facts_left"),
    [
        ({"key": "a", "action": "delete"}, {"b": 2}),
        ({"key": "c", "from_attribute": "a", "action": "upsert"}, {"a": 1, "b": 2}),
        ({"key": "a", "pattern": "^(?P<b>.)", "action": "extract"}, {"a": 1}),
        ({"pattern": "^zzz$", "action": "hash"}, {}),  # a pattern: any key may change
    ],
)
async def test_an_edit_keeps_the_releases_and_drops_the_facts_of_the_keys_it_may_change(
    action, facts_left
):
    """Derived data (pipeline.pdata): what was read from the bytes goes with them; the
    releases of the traces stay; a fact goes when the edit may change its attribute."""
    from pipeline.wholetraces import TraceEntry, TraceIndex, aligned

    t = make_traces([span(a="x1", b=2, sid=1), span(a="y", sid=2)])
    t.trace_index = TraceIndex([TraceEntry(TID, 2, "late", facts={"a": 1, "b": 2})], None)
    before = t.scan()
    proc, sink = build({"actions": [action, {"key": "z", "value": 1, "action": "upsert"}]})
    await proc.consume_traces(t)
    (out,) = sink.batches
    assert out is t and t.raw is None  # changed: re-encoded
    idx = aligned(out)
    assert [(e.trace_id, e.release) for e in idx.entries] == [(TID, "late")]
    assert idx.entries[0].facts == facts_left
    assert out.scan() is not before and len(out.scan()) == 2


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ({"actions": []}, "processors::attributes::actions: at least one action is required"),
        ({"actions": [{"action": "insert", "key": "k"}]}, "actions::0: insert needs one of value"),
        ({"actions": [{"action": "delete"}]}, 'actions::0: at least one of "key" and "pattern"'),
        (
            {"actions": [{"action": "extract", "key": "k", "pattern": "(x)"}]},
            "pattern: has no named groups",
        ),
        ({"actions": [{"action": "hash", "pattern": "("}]}, "pattern: invalid regular expression"),
        ({"actions": [{"action": "convert", "key": "k"}]}, '"converted_type"'),
        (
            {"actions": [{"action": "explode", "key": "k"}]},
            "actions::0::action: invalid enum value 'explode'",
        ),
        (
            {
                "include": {"match_type": "regexp", "attributes": [{"key": "a", "value": 1}]},
                "actions": [{"action": "delete", "key": "k"}],
            },
            "include::attributes: match_type regexp for 'a' only supports string values",
        ),
        (
            {"include": {"match_type": "strict"}, "actions": [{"action": "delete", "key": "k"}]},
            "include: at least one of services",
        ),
    ],
)
def test_config_errors_have_paths(tmp_path, block, expected):
    text = yaml.safe_dump(
        {
            "receivers": {"otlp": {"protocols": {"grpc": {}}}},
            "processors": {"attributes": block},
            "exporters": {"debug": {}},
            "service": {
                "pipelines": {
                    "traces": {
                        "receivers": ["otlp"],
                        "processors": ["attributes"],
                        "exporters": ["debug"],
                    }
                }
            },
        }
    )
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as exc:
        config_mod.load([str(p)], REGISTRY)
    assert any(
        expected in e and e.startswith("processors::attributes") for e in exc.value.errors
    ), exc.value.errors


def test_sidecar_config_is_valid():
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "..", "configs", "sidecar-otlp.yaml")
    cfg = config_mod.load([path], REGISTRY)
    assert "attributes/redact" in [str(p) for p in cfg.pipelines["traces"].processors]
