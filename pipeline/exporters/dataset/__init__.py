"""`dataset` exporter: classified traces in, training data out, with provenance
(docs/dataset.md, docs/components/dataset.md).

It sits at the end of a pipeline after `cleanliness` (whose verdict it reads: the trace's
facts, else its root span's `sieve.trace.*`). Of each whole trace whose class is in
`classes` and that has none of `exclude_reasons`, it reads the conversation of every
successful LLM call (`processors.genai.content`), makes examples (`examples`), checks and
renders them (`formats`), and appends each, with its provenance line, to the dataset files
(`writer`): deduplicated by content hash, split between training and validation by trace
id.

Delivery: `consume_traces` returns once the batch's lines are written and flushed (with
`fsync: true`, the default, fsynced), so a source that commits on delivery (the Kafka
receiver) commits only what is on disk. Nothing is held between batches.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from pipeline import wirescan
from pipeline.component import ExporterFactory, Host, Settings
from pipeline.configtypes import Config
from pipeline.errors import RefusedError
from pipeline.exporters.dataset.build import (
    Builder,
    Example,
    calls_by_trace,
    provenance_line,
    selects,
    validation_share,
)
from pipeline.exporters.dataset.examples import Selection
from pipeline.exporters.dataset.formats import INVALID
from pipeline.exporters.dataset.writer import Segment, known_hashes
from pipeline.pdata import Traces
from pipeline.wholetraces import trace_attribute, trace_views
from processors.cleanliness import A_CLASS, A_REASONS, A_TASK, CLASSES, REASONS
from processors.genai import GenAIConfig, SpanRecord, drop_index, index_for, keys_for

__all__ = [
    "SKIP_REASONS",
    "TRACE_OUTCOMES",
    "DatasetConfig",
    "DatasetExporter",
    "Output",
    "factory",
]

SKIP_REASONS = ("duplicate", "no_content", "served_model", "fallback", *INVALID)
TRACE_OUTCOMES = ("selected", "class", "excluded_reason", "unclassified", "late")
_SERVED_KEYS = frozenset(("sieve.provider.served", "sieve.model.served", "sieve.fallback.fired"))
_SERVED_B = b"sieve.provider.served"


class SplitConfig(Config):
    # share of traces (by trace id hash) whose examples go to the validation file
    validation: Annotated[float, Meta(gt=0, lt=1)] = 0.1
    # default: `<path stem>.validation<ext>`
    validation_path: str = ""


class RotationConfig(Config):
    max_megabytes: Annotated[int, Meta(ge=1)] = 100


class DatasetConfig(GenAIConfig):
    """`hosts` and `attributes` as the GenAI processors': they find the calls (and who
    served them when the spans do not say)."""

    path: str = ""
    format: Literal["openai_chat", "hf_chat"] = "openai_chat"
    per: Literal["conversation", "call"] = "conversation"
    classes: list[str] = msgspec.field(default_factory=lambda: ["clean"])
    exclude_reasons: list[str] = msgspec.field(default_factory=list)
    served_models: list[str] = msgspec.field(default_factory=list)
    on_fallback: Literal["drop", "weight0"] = "drop"
    metadata: bool = False
    split: SplitConfig | None = None
    dedup: bool = True
    rotation: RotationConfig | None = None
    fsync: bool = True
    directory_permissions: str = "0755"

    @classmethod
    def preprocess(cls, raw: object) -> object:
        """`rotation:` or `split:` with nothing under them: on, with their defaults."""
        if isinstance(raw, dict):
            for k in ("rotation", "split"):
                if k in raw and raw[k] is None:
                    raw[k] = {}
        return raw

    def validate(self) -> list[str]:
        errs = super().validate()
        if not self.path.strip():
            errs.append("path: path must be non-empty")
        if not self.classes:
            errs.append(f"classes: at least one of {', '.join(CLASSES)}")
        errs += [
            f"classes: unknown class {c!r} (valid: {', '.join(CLASSES)})"
            for c in self.classes
            if c not in CLASSES
        ]
        errs += [
            f"exclude_reasons: unknown reason {r!r} (valid: {', '.join(REASONS)})"
            for r in self.exclude_reasons
            if r not in REASONS
        ]
        if any(not m.strip() for m in self.served_models):
            errs.append("served_models: empty model name")
        if self.on_fallback == "weight0" and self.format != "openai_chat":
            errs.append(
                "on_fallback: weight0 needs format openai_chat (hf_chat, TRL's format, has "
                "no per-turn weight)"
            )
        vpath = self.split.validation_path if self.split is not None else ""
        if vpath and os.path.abspath(vpath) == os.path.abspath(self.path):
            errs.append("split::validation_path: the same file as path")
        return errs

    def selection(self) -> Selection:
        return Selection(self.per, self.on_fallback, frozenset(self.served_models))

    def validation_path(self) -> str:
        if self.split is None:
            return ""
        if self.split.validation_path:
            return self.split.validation_path
        base, ext = os.path.splitext(self.path)
        return f"{base}.validation{ext or '.jsonl'}"


class Output:
    """The dataset's files (training, and validation with `split`), deduplicated: what
    the exporter and `tracesieve audit --dataset` write through."""

    def __init__(self, cfg: DatasetConfig, replace: bool = False) -> None:
        self.cfg = cfg
        max_bytes = cfg.rotation.max_megabytes << 20 if cfg.rotation is not None else 0
        self.train = Segment(cfg.path, max_bytes, replace)
        vpath = cfg.validation_path()
        self.validation = Segment(vpath, max_bytes, replace) if vpath else None
        self.share = cfg.split.validation if cfg.split is not None else 0.0
        self.seen: set[bytes] | None = set() if cfg.dedup else None
        self.written: Counter[str] = Counter()  # "train" / "validation"
        self.duplicates = 0
        self.replace = replace

    def segments(self) -> list[Segment]:
        return [s for s in (self.train, self.validation) if s is not None]

    def open(self) -> None:
        folder = os.path.dirname(os.path.abspath(self.cfg.path))
        os.makedirs(folder, mode=int(self.cfg.directory_permissions, 8), exist_ok=True)
        for seg in self.segments():
            taken = seg.open()
            if self.seen is not None and not self.replace:
                self.seen.update(taken)
                self.seen |= known_hashes(seg.path)

    def add(self, ex: Example, cls: str, reasons: list[str]) -> bool:
        """Write the example unless it is a duplicate (False)."""
        seen = self.seen
        if seen is not None:
            if ex.digest in seen:
                self.duplicates += 1
                return False
            seen.add(ex.digest)
        prov = provenance_line(ex, cls, reasons)
        data = ex.data
        if self.cfg.metadata:
            data = data[:-1] + b',"metadata":' + prov + b"}"
        seg = self.train
        if self.validation is not None and validation_share(ex.trace_id) < self.share:
            seg = self.validation
            self.written["validation"] += 1
        else:
            self.written["train"] += 1
        seg.write(data, prov)
        return True

    def dirty(self) -> bool:
        return any(s.dirty for s in self.segments())

    def flush(self, fsync: bool) -> None:
        for s in self.segments():
            s.flush(fsync)

    def close(self) -> list[str]:
        """Finish every file; the data files finished (this and earlier rotations)."""
        done: list[str] = []
        for s in self.segments():
            s.finish()
            done += s.finished
        return done


class DatasetExporter:
    mutates_data = False

    def __init__(self, settings: Settings, cfg: DatasetConfig) -> None:
        self.cfg = cfg
        self._keys = keys_for(cfg)
        self._builder = Builder(cfg.format, cfg.selection())
        self._classes = frozenset(cfg.classes)
        self._exclude = frozenset(cfg.exclude_reasons)
        self._out: Output | None = None
        self._lock = asyncio.Lock()
        t = settings.telemetry
        ident = str(settings.id)
        self._m_written = t.counter(
            "tracesieve_dataset_examples_written",
            "Examples written to the dataset files",
            ("exporter", "split"),
        )
        self._m_written_l = {s: self._m_written.labels(ident, s) for s in ("train", "validation")}
        skipped = t.counter(
            "tracesieve_dataset_examples_skipped",
            "Examples not written, by reason",
            ("exporter", "reason"),
        )
        self._m_skipped = {r: skipped.labels(ident, r) for r in SKIP_REASONS}
        traces = t.counter(
            "tracesieve_dataset_traces",
            "Traces seen, by whether their examples were taken",
            ("exporter", "outcome"),
        )
        self._m_traces = {o: traces.labels(ident, o) for o in TRACE_OUTCOMES}
        self.metrics = t.exporter(ident)

    async def start(self, host: Host) -> None:
        out = Output(self.cfg)
        await asyncio.to_thread(out.open)
        self._out = out

    async def shutdown(self) -> None:
        out, self._out = self._out, None
        if out is not None:
            async with self._lock:
                await asyncio.to_thread(out.close)

    async def consume_traces(self, traces: Traces) -> None:
        out = self._out
        if out is None:
            raise RefusedError("dataset exporter is not running")
        async with self._lock:
            written = dict(out.written)
            dups = out.duplicates
            skipped, outcomes = self._write(traces, out)
            if out.dirty():
                if self.cfg.fsync:
                    await asyncio.to_thread(out.flush, True)
                else:
                    out.flush(False)
        for r, n in skipped.items():
            self._m_skipped[r].inc(n)
        if out.duplicates > dups:
            self._m_skipped["duplicate"].inc(out.duplicates - dups)
        for s, n in out.written.items():
            if n > written.get(s, 0):
                self._m_written_l[s].inc(n - written.get(s, 0))
        for o, n in outcomes.items():
            self._m_traces[o].inc(n)
        self.metrics.sent.inc(traces.span_count)

    def _write(self, traces: Traces, out: Output) -> tuple[Counter[str], Counter[str]]:
        skipped: Counter[str] = Counter()
        outcomes: Counter[str] = Counter()
        views = trace_views(traces)
        by_trace: dict[bytes, list[SpanRecord]] | None = None
        raw = traces.base

        def served(rec: SpanRecord) -> tuple[str, str, bool] | None:
            got = dict(wirescan.attributes(raw, rec.b0, rec.b1, _SERVED_KEYS, None))
            if not got:
                return None
            return (
                str(got.get("sieve.provider.served") or ""),
                str(got.get("sieve.model.served") or ""),
                got.get("sieve.fallback.fired") is True,
            )

        for v in views:
            if v.late:
                outcomes["late"] += 1
                continue
            cls = trace_attribute(v, A_CLASS)
            reasons = trace_attribute(v, A_REASONS)
            reasons = [str(r) for r in reasons] if isinstance(reasons, list) else []
            outcome = selects(
                cls if isinstance(cls, str) else "", reasons, self._classes, self._exclude
            )
            outcomes[outcome] += 1
            if outcome != "selected":
                continue
            if by_trace is None:
                by_trace = calls_by_trace(index_for(traces, self._keys))
            task = trace_attribute(v, A_TASK)
            te = self._builder.trace(
                v,
                by_trace.get(v.trace_id, []),
                task if isinstance(task, str) else "",
                served if v.has(_SERVED_B) else None,
            )
            skipped.update(te.skipped)
            for ex in te.examples:
                out.add(ex, str(cls), reasons)
        if by_trace is not None:
            drop_index(traces)  # built here, for this batch only
        return skipped, outcomes


factory = ExporterFactory(
    type="dataset",
    config_type=DatasetConfig,
    create=DatasetExporter,
    stability="alpha",
    description=(
        "training data from clean traces: OpenAI chat or TRL JSONL, with a provenance "
        "sidecar, deduplicated and split"
    ),
)
