"""The contract every registered component keeps (STYLE.md), parametrized over the whole
registry, so a new factory is checked the moment it is listed:

- its default config (or the minimal one in `testdata/contract/<kind>/<type>.yaml`)
  decodes, validates, and round-trips through `print-config`'s encoding;
- `shutdown()` without `start()` is safe, and so is a second `shutdown()`;
- start -> consume -> shutdown works (processors, exporters, connectors), and every
  batch a component retained is released by the end of shutdown;
- a processor that declares `mutates_data = False` leaves its input unchanged.

A type whose config has required fields (or that needs something running) ships a
`testdata/contract/<kind>/<type>.yaml` with `config:`; strings may use `{tmp}` (a
temporary directory) and `{otlp_grpc}` (a live OTLP/gRPC server). `lifecycle: "<why>"`
there skips the start/consume part, saying why.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.component import Kind
from pipeline.configtypes import decode, to_builtins
from pipeline.pdata import Delivery, Traces
from pipeline.registry import REGISTRY
from pipeline.testing import FakeHost, OTLPServer, Sink, sample_request, settings

TESTDATA = Path(__file__).parent / "testdata" / "contract"
KINDS: tuple[Kind, ...] = ("receiver", "processor", "exporter", "extension", "connector")
CASES = [(kind, t) for kind in KINDS for t in REGISTRY.types(kind)]
IDS = [f"{k}:{t}" for k, t in CASES]


@pytest.fixture(scope="module")
def otlp_server():  # type: ignore[no-untyped-def]
    with OTLPServer() as s:
        yield s


def example(kind: str, type_: str, tmp: Path, otlp: OTLPServer | None) -> dict[str, Any]:
    path = TESTDATA / kind / f"{type_}.yaml"
    if not path.exists():
        return {"config": {}}
    data: dict[str, Any] = yaml.safe_load(path.read_text()) or {}

    def fill(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: fill(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fill(x) for x in v]
        if isinstance(v, str):
            v = v.replace("{tmp}", str(tmp))
            # without a live server (nothing is sent) any address will do
            v = v.replace("{otlp_grpc}", otlp.endpoint if otlp else "127.0.0.1:4317")
        return v

    data["config"] = fill(data.get("config") or {})
    return data


def build(kind: Kind, type_: str, cfg: Any, sink: Sink) -> Any:
    factory = REGISTRY.table(kind)[type_]
    s = settings(kind, type_)
    if kind in ("receiver", "processor"):
        return factory.create(s, cfg, sink)
    if kind == "connector":
        return factory.create(s, cfg, {"traces/out": sink})
    return factory.create(s, cfg)


def decoded(kind: Kind, type_: str, raw: dict[str, Any]) -> Any:
    factory = REGISTRY.table(kind)[type_]
    value, errors = decode(raw, factory.config_type, f"{kind}s::{type_}")
    assert not errors, errors
    return value


@pytest.mark.parametrize(("kind", "type_"), CASES, ids=IDS)
def test_default_config_decodes_and_round_trips(kind, type_, tmp_path):
    raw = example(kind, type_, tmp_path, None)["config"]
    value = decoded(kind, type_, raw)
    again = decoded(kind, type_, to_builtins(value))
    assert to_builtins(again) == to_builtins(value)


@pytest.mark.parametrize(("kind", "type_"), CASES, ids=IDS)
async def test_shutdown_without_start_is_safe_and_idempotent(kind, type_, tmp_path):
    raw = example(kind, type_, tmp_path, None)["config"]
    comp = build(kind, type_, decoded(kind, type_, raw), Sink())
    await comp.shutdown()
    await comp.shutdown()


@pytest.mark.parametrize(("kind", "type_"), CASES, ids=IDS)
async def test_start_consume_shutdown(kind, type_, tmp_path, otlp_server):
    ex = example(kind, type_, tmp_path, otlp_server)
    if ex.get("lifecycle"):
        pytest.skip(str(ex["lifecycle"]))
    sink = Sink()
    comp = build(kind, type_, decoded(kind, type_, ex["config"]), sink)
    host = FakeHost(deadline=asyncio.get_running_loop().time() + 10)
    await comp.start(host)
    outcomes: list[bool] = []
    try:
        if kind in ("processor", "exporter", "connector"):
            delivery = Delivery(outcomes.append)
            raw = sample_request(3, n_spans=12).SerializeToString()
            traces = Traces.decode(raw)
            traces.deliveries = (delivery,)
            await comp.consume_traces(traces)
            delivery.release()  # the receiver's own share
    finally:
        await comp.shutdown()
    await comp.shutdown()  # twice is harmless after a start too
    if kind in ("processor", "exporter", "connector"):
        assert outcomes, f"{kind} {type_} kept a batch it never released"
        assert len(outcomes) == 1
        assert sink.span_count <= 12
    if kind == "connector":
        assert sink.span_count == 12


PROCESSORS = [t for k, t in CASES if k == "processor"]


@pytest.mark.parametrize("type_", PROCESSORS)
async def test_read_only_processor_leaves_its_input_unchanged(type_, tmp_path, otlp_server):
    ex = example("processor", type_, tmp_path, otlp_server)
    if ex.get("lifecycle"):
        pytest.skip(str(ex["lifecycle"]))
    sink = Sink()
    comp = build("processor", type_, decoded("processor", type_, ex["config"]), sink)
    if comp.mutates_data:
        pytest.skip(f"{type_} declares mutates_data=True")
    await comp.start(FakeHost(deadline=asyncio.get_running_loop().time() + 10))
    try:
        batches = [Traces(sample_request(seed, n_spans=20)) for seed in range(3)]
        before = [b.request.SerializeToString(deterministic=True) for b in batches]
        for b in batches:
            await comp.consume_traces(b)
    finally:
        await comp.shutdown()
    after = [b.request.SerializeToString(deterministic=True) for b in batches]
    assert after == before


def test_every_testdata_file_names_a_registered_type():
    for path in TESTDATA.glob("*/*.yaml"):
        kind, type_ = path.parent.name, path.stem
        assert type_ in REGISTRY.types(kind), f"{path}: no {kind} {type_!r} in the registry"  # type: ignore[arg-type]


def test_registry_lists_the_core_components():
    assert os.path.isdir(TESTDATA)
    for kind, type_ in [
        ("receiver", "otlp"),
        ("processor", "batch"),
        ("processor", "memory_limiter"),
        ("exporter", "otlp_grpc"),
        ("exporter", "otlp_http"),
        ("exporter", "file"),
        ("exporter", "debug"),
        ("extension", "health_check"),
        ("connector", "forward"),
    ]:
        assert type_ in REGISTRY.types(kind)  # type: ignore[arg-type]
