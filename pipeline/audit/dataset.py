"""`tracesieve audit --dataset FILE`: the `dataset` exporter's examples of a dump, written
once the verdicts are final, the same for any `--workers`.

- First pass (per partition, in a worker): the processors' verdicts are not final yet
  (the timing check waits for the dump's medians, and can only add `slow`), so every
  trace the selection takes with its first-pass verdict, or with `slow` added, has its
  examples built (`Candidates`, from the processors' own GenAI index of the batch) and
  kept on disk with what was skipped.
- Second pass: with the final verdicts, the partition's selected examples are sorted by
  (trace start, trace id, order in the trace) into a part file; the traces by outcome and
  the examples skipped by reason are counted.
- At the end, the main process merges the parts in that order (a k-way merge, streamed),
  drops duplicates (by content hash: the first in that order is kept) and writes the set
  (`Output`: temporary files renamed into place; `split` by trace id).

So the files depend only on the dump and the options: not on the number of workers, nor
on how traces fell into partitions.
"""

from __future__ import annotations

import heapq
import os
import struct
from collections import Counter
from collections.abc import Iterator
from typing import Any

import msgspec

from pipeline.audit.records import Verdict
from pipeline.exporters.dataset import TRACE_OUTCOMES, DatasetConfig, Output
from pipeline.exporters.dataset.build import (
    Builder,
    Example,
    TraceExamples,
    calls_by_trace,
    selects,
)
from pipeline.pdata import Traces
from pipeline.wholetraces import TraceView
from processors.cleanliness import CLASSES, DEFAULT_CLASSES, REASONS, CleanlinessConfig
from processors.genai import GenAIIndex, index_for
from processors.genai.index import Keys

__all__ = ["Candidates", "decide", "merge", "read_candidates", "write_candidates"]

_REC = struct.Struct(">I")


class Selected(msgspec.Struct, array_like=True):
    example: Example
    cls: str
    reasons: list[str]


class Candidates:
    """The first pass's batch sink: the examples of every trace that may be selected."""

    def __init__(self, cfg: DatasetConfig, cleanliness: CleanlinessConfig, keys: Keys) -> None:
        self.cfg = cfg
        self.classes = frozenset(cfg.classes)
        self.exclude = frozenset(cfg.exclude_reasons)
        self.builder = Builder(cfg.format, cfg.selection())
        self.keys = keys
        self.found: list[TraceExamples] = []
        classes_of = {**DEFAULT_CLASSES, **cleanliness.reason_classes}
        self._slow_rank = CLASSES.index(classes_of["slow"])
        self.index: GenAIIndex | None = None  # the batch's, left by the chain's tap

    def _may_select(self, v: Verdict) -> bool:
        if selects(v.cls, v.reasons, self.classes, self.exclude) == "selected":
            return True
        if "slow" in v.reasons or not v.task:
            return False  # no (other) verdict the timing check can give it
        cls = v.cls
        if cls != "failed":
            cls = CLASSES[max(CLASSES.index(cls), self._slow_rank)]
        reasons = [r for r in REASONS if r in v.reasons or r == "slow"]
        return selects(cls, reasons, self.classes, self.exclude) == "selected"

    def __call__(self, traces: Traces, views: list[TraceView], verdicts: list[Verdict]) -> None:
        try:
            self._take(traces, views, verdicts)
        finally:
            self.index = None  # freed now, while it is in the cache (not with the next batch)

    def _take(self, traces: Traces, views: list[TraceView], verdicts: list[Verdict]) -> None:
        by_trace = None
        for view, v in zip(views, verdicts, strict=True):
            if not self._may_select(v):
                continue
            if by_trace is None:
                idx = self.index
                if idx is None or idx.raw is not traces.base:
                    idx = index_for(traces, self.keys)
                by_trace = calls_by_trace(idx)
            self.found.append(self.builder.trace(view, by_trace.get(view.trace_id, []), v.task))


def write_candidates(path: str, found: list[TraceExamples]) -> None:
    enc = msgspec.msgpack.Encoder()
    with open(path, "wb") as fh:
        for i in range(0, len(found), 1024):
            data = enc.encode(found[i : i + 1024])
            fh.write(_REC.pack(len(data)))
            fh.write(data)


def read_candidates(path: str) -> list[TraceExamples]:
    dec = msgspec.msgpack.Decoder(list[TraceExamples])
    out: list[TraceExamples] = []
    with open(path, "rb") as fh:
        data = fh.read()
    pos = 0
    while pos < len(data):
        (n,) = _REC.unpack_from(data, pos)
        pos += 4
        out += dec.decode(data[pos : pos + n])
        pos += n
    return out


def decide(
    cfg: DatasetConfig,
    found: list[TraceExamples],
    final: list[Verdict],
    part_path: str,
) -> dict[str, dict[str, int]]:
    """With the partition's final verdicts: its selected examples, sorted, to `part_path`;
    the counts (`traces` by outcome, `skipped` by reason)."""
    classes, exclude = frozenset(cfg.classes), frozenset(cfg.exclude_reasons)
    outcomes: Counter[str] = Counter()
    verdict_of: dict[bytes, Verdict] = {}
    for v in final:
        outcomes[selects(v.cls, v.reasons, classes, exclude)] += 1
        verdict_of[v.trace_id] = v
    skipped: Counter[str] = Counter()
    chosen: list[Selected] = []
    for te in found:
        fv = verdict_of.get(te.trace_id)
        if fv is None or selects(fv.cls, fv.reasons, classes, exclude) != "selected":
            continue
        skipped.update(te.skipped)
        chosen += [Selected(ex, fv.cls, list(fv.reasons)) for ex in te.examples]
    chosen.sort(key=lambda s: (s.example.start, s.example.trace_id, s.example.ordinal))
    enc = msgspec.msgpack.Encoder()
    with open(part_path, "wb") as fh:
        for s in chosen:
            data = enc.encode(s)
            fh.write(_REC.pack(len(data)))
            fh.write(data)
    return {"traces": dict(outcomes), "skipped": dict(skipped)}


def _read_part(path: str) -> Iterator[Selected]:
    dec = msgspec.msgpack.Decoder(Selected)
    if not os.path.exists(path):
        return
    with open(path, "rb") as fh:
        while True:
            head = fh.read(4)
            if not head:
                return
            (n,) = _REC.unpack(head)
            yield dec.decode(fh.read(n))


def merge(
    cfg: DatasetConfig, parts: list[str], counts: list[dict[str, dict[str, int]]]
) -> dict[str, Any]:
    """Write the set from the partitions' sorted parts; what the report says of it."""
    out = Output(cfg, replace=True)
    out.open()
    try:
        streams = [_read_part(p) for p in parts]
        for s in heapq.merge(
            *streams, key=lambda s: (s.example.start, s.example.trace_id, s.example.ordinal)
        ):
            out.add(s.example, s.cls, s.reasons)
    finally:
        files = out.close()
    traces: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    for c in counts:
        traces.update(c["traces"])
        skipped.update(c["skipped"])
    if out.duplicates:
        skipped["duplicate"] += out.duplicates
    return {
        "path": cfg.path,
        "format": cfg.format,
        "per": cfg.per,
        "classes": list(cfg.classes),
        "files": files,
        "examples": {"train": out.written["train"], "validation": out.written["validation"]},
        "skipped": dict(sorted(skipped.items())),
        "traces": {o: traces.get(o, 0) for o in TRACE_OUTCOMES if o != "late"},
    }
