"""Accuracy of the `cleanliness` processor on labelled generator traces.

    python -m benchmarks.accuracy --traces 12000 --seed 1 [--rates all=0.1]

Generates `--traces` traces (every convention, every fault type at the generator's rates),
hands them to the processor in trace-aligned batches indexed as `groupbytrace` releases
them (whole traces, up to 8192 spans a batch, in arrival order), once with the default
config and once with `strict_single_model: true`, the tool schemas written by the
generator in both. The attributes written on each root span are compared with the
generator's ground truth (`expected` and `expected_strict`).

Prints one JSON record: per config the confusion matrix (`confusion[truth][predicted]`),
per-class precision, recall, F1 and support, macro-F1, accuracy, the share of traces whose
reasons are exactly the expected ones, per convention the traces, those classified right,
class accuracy and reason precision/recall (over every reason of every trace), per-reason
false positives and negatives, and a few mismatched traces (for debugging); plus the classifier's time per trace.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import msgspec

from benchmarks.common import machine
from benchmarks.generator import FaultRates, GeneratedTrace, Generator, write_tool_schemas
from pipeline.otlpwire import TAG_1, frame
from pipeline.pdata import Traces
from pipeline.testing import Sink, attrs
from pipeline.testing import settings as component_settings
from pipeline.wholetraces import TraceEntry, TraceIndex
from processors.cleanliness import CLASSES, REASONS, CleanlinessConfig, CleanlinessProcessor

MAX_BATCH_SPANS = 8192  # groupbytrace's release batches


def whole_trace_batches(
    traces: Sequence[GeneratedTrace], max_spans: int = MAX_BATCH_SPANS
) -> Iterator[Traces]:
    """Batches as `groupbytrace` releases them: encoded, each trace a contiguous run of
    resource_spans and bytes, with a `TraceIndex` (release `root`)."""
    batch: list[GeneratedTrace] = []
    n = 0
    for t in traces:
        if batch and n + t.span_count > max_spans:
            yield _batch(batch)
            batch, n = [], 0
        batch.append(t)
        n += t.span_count
    if batch:
        yield _batch(batch)


def _batch(traces: list[GeneratedTrace]) -> Traces:
    pieces: list[bytes] = []
    entries: list[TraceEntry] = []
    byte_pos = 0
    for t in traces:
        piece = b"".join(frame(TAG_1, rs.SerializeToString()) for rs in t.resource_spans)
        entries.append(
            TraceEntry(
                t.trace_id,
                t.span_count,
                "root",
                byte_pos,
                byte_pos + len(piece),
                len(t.resource_spans),
            )
        )
        pieces.append(piece)
        byte_pos += len(piece)
    raw = b"".join(pieces)
    out = Traces(raw=raw, span_count=sum(e.span_count for e in entries))
    out.trace_index = TraceIndex(entries, raw)
    return out


def classify(
    traces: Sequence[GeneratedTrace], config: dict[str, Any]
) -> tuple[dict[bytes, tuple[str, list[str]]], float]:
    """(trace id -> (class, reasons) read from the root span written, seconds spent in the
    processor)."""
    cfg = msgspec.convert(config, CleanlinessConfig)
    errs = cfg.validate()
    if errs:
        raise SystemExit(f"invalid config: {errs}")
    sink = Sink(mutates_data=True)
    proc = CleanlinessProcessor(component_settings(id="cleanliness"), cfg, sink)
    batches = list(whole_trace_batches(traces))
    spent = 0.0

    async def run() -> None:
        nonlocal spent
        for b in batches:
            t0 = time.perf_counter()
            await proc.consume_traces(b)
            spent += time.perf_counter() - t0

    asyncio.run(run())
    got: dict[bytes, tuple[str, list[str]]] = {}
    for b in sink.batches:
        for _, _, s in b.spans():
            if not s.parent_span_id:
                a = attrs(s)
                got[s.trace_id] = (a.get("sieve.trace.class", ""), a.get("sieve.trace.reasons", []))
    return got, spent


def score(
    traces: Sequence[GeneratedTrace], got: dict[bytes, tuple[str, list[str]]], truth_key: str
) -> dict[str, Any]:
    confusion = {c: dict.fromkeys(CLASSES, 0) for c in CLASSES}
    reasons_exact = 0
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    wrong: list[dict[str, Any]] = []
    by_conv: dict[str, dict[str, int]] = {}
    for t in traces:
        exp = t.truth[truth_key]
        cls, reasons = got.get(t.trace_id, ("", []))
        if cls not in CLASSES:
            raise SystemExit(f"trace {t.trace_id.hex()}: no sieve.trace.class written")
        confusion[exp["class"]][cls] += 1
        conv = by_conv.setdefault(
            t.truth["convention"],
            {"traces": 0, "class_right": 0, "reasons_tp": 0, "reasons_fp": 0, "reasons_fn": 0},
        )
        conv["traces"] += 1
        conv["class_right"] += cls == exp["class"]
        want, have = set(exp["reasons"]), set(reasons)
        conv["reasons_tp"] += len(want & have)
        conv["reasons_fp"] += len(have - want)
        conv["reasons_fn"] += len(want - have)
        if want == have:
            reasons_exact += 1
        fp.update(have - want)
        fn.update(want - have)
        if (want != have or cls != exp["class"]) and len(wrong) < 10:
            wrong.append(
                {
                    "trace_id": t.trace_id.hex(),
                    "convention": t.truth["convention"],
                    "faults": t.truth["faults"],
                    "expected": exp,
                    "got": {"class": cls, "reasons": reasons},
                }
            )
    per_class: dict[str, dict[str, float]] = {}
    for c in CLASSES:
        tp = confusion[c][c]
        predicted = sum(confusion[x][c] for x in CLASSES)
        support = sum(confusion[c].values())
        p = tp / predicted if predicted else (1.0 if not support else 0.0)
        r = tp / support if support else (1.0 if not predicted else 0.0)
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        per_class[c] = {
            "precision": round(p, 6),
            "recall": round(r, 6),
            "f1": round(f1, 6),
            "support": support,
        }
    per_conv: dict[str, dict[str, float]] = {}
    for name, counts in by_conv.items():
        tp, fp_, fn_ = counts["reasons_tp"], counts["reasons_fp"], counts["reasons_fn"]
        per_conv[name] = {
            "traces": counts["traces"],
            "class_right": counts["class_right"],
            "class_accuracy": round(counts["class_right"] / counts["traces"], 6),
            "reason_precision": round(tp / (tp + fp_), 6) if tp + fp_ else 1.0,
            "reason_recall": round(tp / (tp + fn_), 6) if tp + fn_ else 1.0,
        }
    n = len(traces)
    return {
        "confusion": confusion,
        "per_class": per_class,
        "macro_f1": round(sum(v["f1"] for v in per_class.values()) / len(CLASSES), 6),
        "accuracy": round(sum(confusion[c][c] for c in CLASSES) / n, 6) if n else 0.0,
        "reasons_exact": round(reasons_exact / n, 6) if n else 0.0,
        "by_convention": per_conv,
        "reason_false_positives": {r: fp[r] for r in REASONS if fp[r]},
        "reason_false_negatives": {r: fn[r] for r in REASONS if fn[r]},
        "mismatches": wrong,
    }


def evaluate(n: int, seed: int, rates: str = "") -> dict[str, Any]:
    t0 = time.perf_counter()
    traces = list(Generator(seed, rates=FaultRates.parse(rates)).traces(n))
    gen_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="tracesieve-schemas-") as schemas:
        write_tool_schemas(schemas)
        out: dict[str, Any] = {
            "case": "accuracy",
            "traces": n,
            "seed": seed,
            "rates": rates or "default",
            "spans": sum(t.span_count for t in traces),
            "truth_classes": dict(Counter(t.truth["expected"]["class"] for t in traces)),
            "generate_s": round(gen_s, 3),
        }
        for name, extra, key in (
            ("default", {}, "expected"),
            ("strict_single_model", {"strict_single_model": True}, "expected_strict"),
        ):
            got, spent = classify(traces, {"tool_schemas": schemas, **extra})
            rec = score(traces, got, key)
            rec["processor_s"] = round(spent, 3)
            rec["us_per_trace"] = round(spent / n * 1e6, 1) if n else 0.0
            out[name] = rec
    out["macro_f1"] = out["default"]["macro_f1"]
    out["macro_f1_strict"] = out["strict_single_model"]["macro_f1"]
    out["machine"] = machine()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("--traces", type=int, default=12_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--rates",
        default="",
        help="generator fault rates, e.g. all=0.1 or slow=0.2 (default: its own)",
    )
    args = ap.parse_args(argv)
    if args.traces < 1:
        ap.error("--traces must be at least 1")
    try:
        FaultRates.parse(args.rates)
    except ValueError as exc:
        ap.error(str(exc))
    print(json.dumps(evaluate(args.traces, args.seed, args.rates), sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
