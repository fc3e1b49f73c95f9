"""The examples of a batch of classified whole traces, ready to be written: one `Example`
per example (its JSON line without the newline, its content hash, its provenance but for
the trace's verdict) and, per trace, the examples skipped and why.

Shared by the `dataset` exporter and `tracesieve audit --dataset` (whose workers build
examples in the first pass and decide in the second, once the verdicts are final).
"""

from __future__ import annotations

import datetime
import hashlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec

from pipeline.exporters.dataset.examples import Selection, calls_of, drafts
from pipeline.exporters.dataset.formats import check, render
from pipeline.wholetraces import TraceView, resource_attributes
from processors.genai import GenAIIndex, SpanRecord, normalize_model

__all__ = [
    "Builder",
    "Example",
    "TraceExamples",
    "digest_of",
    "provenance_line",
    "selects",
    "validation_share",
]

_json = msgspec.json.Encoder()


class Example(msgspec.Struct, array_like=True, frozen=True):
    trace_id: bytes
    start: int  # the trace's start (unix ns): with trace_id and ordinal, the order written
    ordinal: int  # within the trace
    data: bytes  # the JSON object, no newline, no metadata
    digest: bytes  # blake2b-128 of `data`: duplicates have the same
    span_ids: list[str]
    turns: list[dict[str, Any]]
    task_class: str
    service: str


class TraceExamples(msgspec.Struct, array_like=True):
    """A trace's examples and what was skipped (reason -> count)."""

    trace_id: bytes
    examples: list[Example]
    skipped: dict[str, int]


def digest_of(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def validation_share(trace_id: bytes) -> float:
    """Where the trace falls in [0, 1): below `split.validation`, in the validation file."""
    h = hashlib.blake2b(trace_id, digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


def selects(
    cls: str, reasons: list[str] | tuple[str, ...], classes: frozenset[str], exclude: frozenset[str]
) -> str:
    """ "selected", or why not: "unclassified", "class", "excluded_reason"."""
    if not cls:
        return "unclassified"
    if cls not in classes:
        return "class"
    if exclude and not exclude.isdisjoint(reasons):
        return "excluded_reason"
    return "selected"


def _rfc3339(ns: int) -> str:
    t = datetime.datetime.fromtimestamp(ns // 1_000_000_000, datetime.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 1_000_000_000:09d}Z"


def provenance_line(ex: Example, cls: str, reasons: list[str]) -> bytes:
    """The example's provenance line (no newline); `hash` first, for a quick read back."""
    return _json.encode(
        {
            "hash": ex.digest.hex(),
            "trace_id": ex.trace_id.hex(),
            "span_ids": ex.span_ids,
            "class": cls,
            "reasons": reasons,
            "turns": ex.turns,
            "task_class": ex.task_class,
            "start": _rfc3339(ex.start),
            "service": ex.service,
        }
    )


class Builder:
    def __init__(self, fmt: str, sel: Selection) -> None:
        self.fmt = fmt
        self.sel = Selection(
            sel.per, sel.on_fallback, frozenset(normalize_model(m) for m in sel.served_models)
        )

    def trace(
        self,
        view: TraceView,
        records: list[SpanRecord],
        task_class: str,
        served: Callable[[SpanRecord], tuple[str, str, bool] | None] | None = None,
    ) -> TraceExamples:
        """The examples of one trace (`records`: its call records in the batch's index)."""
        skipped: Counter[str] = Counter()
        calls, missing = calls_of(records, served)
        if missing:
            skipped["no_content"] += missing
        out: list[Example] = []
        if calls:
            root = view.root
            start = root[6] if root is not None else min(s[6] for s in view.spans)
            found, no_input = drafts(calls, self.sel)
            if no_input:
                skipped["no_content"] += no_input
            for d in found:
                reason = d.skip or check(d)
                if reason:
                    skipped[reason] += 1
                    continue
                data = _json.encode(render(d, self.fmt))
                weights = d.weights
                turns = []
                for i, t in enumerate(d.turns):
                    turn: dict[str, Any] = {
                        "span_id": t.span_id.hex() or None,
                        "provider": t.provider or None,
                        "model": t.model or None,
                    }
                    if t.fallback:
                        turn["fallback"] = True
                    if weights is not None:
                        turn["weight"] = weights[i]
                    turns.append(turn)
                # the trace's service: its root's (else that of the span the content is on)
                at = root[9] if root is not None else d.b0
                service = resource_attributes(view.resource_of(at)).get("service.name")
                out.append(
                    Example(
                        view.trace_id,
                        start,
                        len(out),
                        data,
                        digest_of(data),
                        [s.hex() for s in d.span_ids],
                        turns,
                        task_class,
                        service if isinstance(service, str) else "",
                    )
                )
        return TraceExamples(view.trace_id, out, dict(skipped))


def calls_by_trace(idx: GenAIIndex) -> dict[bytes, list[SpanRecord]]:
    """The index's call records, by trace id (analysed: chains built)."""
    idx.build_chains()
    got: dict[bytes, list[SpanRecord]] = {}
    for rec in idx.calls:
        got.setdefault(rec.trace_id, []).append(rec)
    return got
