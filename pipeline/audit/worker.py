"""An audit worker: one process (or, with `--workers 1`, the main one) that does three jobs
on commands from the main process.

1. `chunk` / `range`: decode messages (handed over, or read from a range of a plain file:
   protobuf checked with `wirescan.validate`, OTLP JSON turned into wire bytes by
   `jsonwire`), reject spans without usable ids, and append every span to its trace's
   bucket (`partition`).
2. `pass1` (a partition): the processors over every trace of the partition, the timing
   check off (`cleanliness.fix_medians({})`); a `Verdict` per trace goes to disk; the
   sketches of clean traces' durations per task class go back, to be merged into the
   dump's medians, with the sums the timing check cannot change (`Tally`).
3. `pass2` (a partition, with the medians): the traces the medians make slow (or, with
   `--output`, every trace) go through the processors again with the medians fixed, so
   that `cleanliness` itself decides them; their verdicts replace the first pass's, and
   the partition's verdicts, summed, go back.

The garbage collector is off while a partition is worked on (the processors free what
they make by reference counting) and runs between partitions.
"""

from __future__ import annotations

import asyncio
import gc
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from pipeline import jsonwire, otlpjson, wirescan
from pipeline.audit import partition
from pipeline.audit.chain import Chain, ChainSpec
from pipeline.audit.dataset import Candidates, decide, read_candidates, write_candidates
from pipeline.audit.inputs import JSON, BadMessage, Range, read_range
from pipeline.audit.records import BatchSink, CallTap, RecordSink, Tally, Verdict, ratio_of
from pipeline.audit.schemas import SchemaErrors
from pipeline.otlpwire import TAG_1, TAG_2, varint
from pipeline.pdata import InvalidTracesError, Traces
from pipeline.wholetraces import TraceView, select
from pipeline.wirescan import WireError
from processors.genai import keys_for

__all__ = ["ChunkResult", "Worker", "WorkerConfig"]

# a message in a chunk: (kind, data, source index, ordinal, offset)
Item = tuple[int, bytes, int, int, int]
_REC = struct.Struct(">I")
_PROGRESS_EVERY = 50_000  # spans between progress reports in a pass


@dataclass
class WorkerConfig:
    spec: ChainSpec
    directory: str
    workers: int
    output: str = ""  # "", "json" or "proto"
    keep: frozenset[str] = frozenset()
    dataset: Any = None  # the dataset exporter's config (--dataset), or None


@dataclass
class ChunkResult:
    messages: int = 0
    spans: int = 0  # decoded
    rejected: int = 0  # spans without usable ids
    by_source: dict[int, list[int]] = field(default_factory=dict)  # source -> [messages, spans]
    bad_by_source: dict[int, int] = field(default_factory=dict)  # messages that did not decode
    # (source, ordinal, offset, problem): the first few of each
    bad: list[tuple[int, int, int, str]] = field(default_factory=list)
    rejected_examples: list[tuple[int, int, int, str]] = field(default_factory=list)
    bytes: int = 0  # a range's size
    lines: int = 0  # a range of JSON lines: how many (ordinals above count within it)


class Worker:
    def __init__(self, cfg: WorkerConfig, index: int) -> None:
        self.cfg = cfg
        self.index = index
        self.spill = partition.Spill(cfg.directory, index)
        self._records = msgspec.msgpack.Encoder()
        self._decode_records = msgspec.msgpack.Decoder(list[Verdict])

    # -- 1. partitioning ------------------------------------------------------------------
    def chunk(self, items: list[Item]) -> ChunkResult:
        res = ChunkResult()
        for kind, data, src, ordinal, offset in items:
            res.messages += 1
            counts = res.by_source.get(src)
            if counts is None:
                counts = res.by_source[src] = [0, 0]
            counts[0] += 1
            try:
                if kind == JSON:
                    raw, n = jsonwire.decode(data)
                    ids_ok = wirescan.ids_ok(raw)
                else:
                    raw = data
                    n, ids_ok = wirescan.validate(raw)
            except (InvalidTracesError, WireError) as exc:
                res.bad_by_source[src] = res.bad_by_source.get(src, 0) + 1
                if len(res.bad) < 20:
                    what = str(exc) if kind == JSON else f"invalid protobuf: {exc}"
                    res.bad.append((src, ordinal, offset, what))
                continue
            res.spans += n
            counts[1] += n
            if not n:
                continue
            by_bucket, rejected, why = partition.split(raw, ids_ok)
            if rejected:
                res.rejected += rejected
                if len(res.rejected_examples) < 20:
                    res.rejected_examples.append(
                        (src, ordinal, offset, f"{rejected} span(s): {why}")
                    )
            for b, (fields, spans) in by_bucket.items():
                self.spill.write(b, fields, spans)
        return res

    def range(self, si: int, path: str, fmt: str, r: Range) -> ChunkResult:
        """`chunk` for a range of a plain file, read here."""
        items: list[Item] = []
        bad: list[BadMessage] = []
        messages, lines = read_range(path, fmt, r)
        for m in messages:
            if isinstance(m, BadMessage):
                bad.append(m)
            else:
                items.append((m.kind, m.data, si, m.ordinal, m.offset))
        res = self.chunk(items)
        for b in bad:
            res.bad_by_source[si] = res.bad_by_source.get(si, 0) + 1
            if len(res.bad) < 20:
                res.bad.append((si, b.ordinal, b.offset, b.what))
        res.bytes = r.end - r.start
        res.lines = lines
        return res

    def flush(self) -> dict[int, int]:
        self.spill.close()
        return dict(self.spill.sizes)

    # -- 2. first pass --------------------------------------------------------------------
    def pass1(
        self, pid: int, buckets: list[int], progress: Callable[[int], None]
    ) -> tuple[dict[str, Any], int, set[str], Tally]:
        """(sketches of clean traces' root durations by task class, spans, conventions
        seen, the sums the timing check cannot change)"""
        verdicts: list[Verdict] = []
        tally = Tally()
        cand: Candidates | None = None
        if self.cfg.dataset is not None:
            spec = self.cfg.spec
            cand = Candidates(
                self.cfg.dataset, spec.cleanliness, keys_for(spec.configs["fallback_chain"])
            )
        chain, sink, spans = self._run(
            buckets, None, {}, verdicts.append, tally, [cand] if cand else (), progress, cand
        )
        if cand is not None:
            write_candidates(self._dataset_path(pid), cand.found)
        with open(self._records_path(pid), "wb") as fh:
            for i in range(0, len(verdicts), 8192):
                data = self._records.encode(verdicts[i : i + 8192])
                fh.write(_REC.pack(len(data)))
                fh.write(data)
        return chain.cleanliness.timing_sketches(), spans, sink.conventions, tally

    # -- 3. second pass -------------------------------------------------------------------
    def pass2(
        self,
        pid: int,
        buckets: list[int],
        medians: dict[str, float],
        progress: Callable[[int], None],
    ) -> tuple[Tally, int, dict[str, dict[str, int]] | None]:
        """The partition's verdicts summed, how many traces went through the processors
        again, and (with a dataset) its counts."""
        verdicts = self._load_records(pid)
        max_ratio = self.cfg.spec.cleanliness.timing.max_ratio
        again: set[bytes] | None
        if self.cfg.output:
            again = None  # every trace, for the enriched output
        else:
            again = set()
            for v in verdicts:
                ratio = ratio_of(v, medians)
                if ratio is not None and ratio > max_ratio:
                    again.add(v.trace_id)
        redone: dict[bytes, Verdict] = {}
        if again is None or again:
            sinks: list[BatchSink] = []
            out = None
            if self.cfg.output:
                out = open(self.output_path(pid), "wb")  # noqa: SIM115 - closed below
                sinks.append(self._output_sink(out))
            try:
                self._run(
                    buckets,
                    again,
                    medians,
                    lambda v: redone.__setitem__(v.trace_id, v),
                    None,
                    sinks,
                    progress,
                )
            finally:
                if out is not None:
                    out.close()
        tally = Tally()
        finals: list[Verdict] = []
        for v in verdicts:
            final = redone.get(v.trace_id, v)
            finals.append(final)
            tally.add(final, ratio_of(final, medians), max_ratio)
        os.unlink(self._records_path(pid))
        counts = None
        if self.cfg.dataset is not None:
            found = read_candidates(self._dataset_path(pid))
            counts = decide(self.cfg.dataset, found, finals, self.dataset_part(pid))
            os.unlink(self._dataset_path(pid))
        return tally, len(redone), counts

    # -- the processors -------------------------------------------------------------------
    def _run(
        self,
        buckets: list[int],
        only: set[bytes] | None,
        medians: dict[str, float],
        emit: Callable[[Verdict], None],
        tally: Tally | None,
        sinks: list[BatchSink] | tuple[()],
        progress: Callable[[int], None],
        dataset: Candidates | None = None,
    ) -> tuple[Chain, RecordSink, int]:
        spec = self.cfg.spec
        holder: list[Chain] = []
        schema_errors = SchemaErrors.for_config(spec.cleanliness)
        sink = RecordSink(
            lambda v: holder[0].cleanliness.timing_of(v),
            emit,
            tally=tally,
            schema_errors=schema_errors.errors if schema_errors is not None else None,
            batch_sinks=sinks,
        )
        chain = Chain(spec, sink, CallTap)
        chain.tap.tally = tally
        if dataset is not None:
            chain.tap.on_index = lambda idx: setattr(dataset, "index", idx)
        holder.append(chain)
        chain.cleanliness.fix_medians(medians)
        spans = 0

        # the traces to go through again (second pass), by bucket: buckets without one are
        # not read, records that do not hold one of theirs (a byte search) not taken apart
        wanted: dict[int, list[bytes]] = {}
        if only is not None:
            for tid in only:
                wanted.setdefault(partition.bucket_of(tid), []).append(tid)
            buckets = [b for b in buckets if b in wanted]

        async def feed() -> None:
            nonlocal spans
            first = chain.first
            told = 0
            for b, raw, n in partition.read_records(self.cfg.directory, self.cfg.workers, buckets):
                if only is not None:
                    if not any(tid in raw for tid in wanted[b]):
                        continue
                    raw, n = _only(raw, only)
                    if not n:
                        continue
                await first.consume_traces(Traces(raw=raw, span_count=n))
                spans += n
                if spans - told >= _PROGRESS_EVERY:
                    progress(spans - told)
                    told = spans
            await chain.groupbytrace.shutdown()  # a trace is complete: the input has ended
            if spans > told:
                progress(spans - told)

        was = gc.isenabled()
        gc.disable()
        try:
            asyncio.run(feed())
        finally:
            if was:
                gc.enable()
            gc.collect()
        return chain, sink, spans

    def _output_sink(self, fh: Any) -> BatchSink:
        keep = self.cfg.keep
        proto = self.cfg.output == "proto"

        def write(traces: Traces, views: list[TraceView], verdicts: list[Verdict]) -> None:
            part = select(traces, views, [v.cls in keep for v in verdicts]) if keep else traces
            if part is None:
                return
            if proto:
                data = part.to_bytes()
                fh.write(_REC.pack(len(data)))
                fh.write(data)
            else:
                fh.write(otlpjson.encode(part.request))
                fh.write(b"\n")

        return write

    def output_path(self, pid: int) -> str:
        return os.path.join(self.cfg.directory, f"p{pid}.out")

    def dataset_part(self, pid: int) -> str:
        return os.path.join(self.cfg.directory, f"p{pid}.dataset")

    def _dataset_path(self, pid: int) -> str:
        return os.path.join(self.cfg.directory, f"p{pid}.candidates")

    def _records_path(self, pid: int) -> str:
        return os.path.join(self.cfg.directory, f"p{pid}.records")

    def _load_records(self, pid: int) -> list[Verdict]:
        out: list[Verdict] = []
        with open(self._records_path(pid), "rb") as fh:
            data = fh.read()
        pos = 0
        while pos < len(data):
            (n,) = _REC.unpack_from(data, pos)
            pos += 4
            out += self._decode_records.decode(data[pos : pos + n])
            pos += n
        return out


def _only(raw: bytes, keep: set[bytes]) -> tuple[bytes, int]:
    """The spans of the traces in `keep` (resource and scope kept), and how many."""
    groups, _ = wirescan.group(raw)
    pieces: list[bytes] = []
    total = 0
    for (r0, r1), (s0, s1), by_tid in groups:
        blobs = []
        for tid, (blob, n) in by_tid.items():
            if tid in keep:
                blobs.append(blob)
                total += n
        if blobs:
            ss = b"".join((s0, *blobs, s1))
            rs = b"".join((r0, TAG_2, varint(len(ss)), ss, r1))
            pieces.append(TAG_1 + varint(len(rs)) + rs)
    return b"".join(pieces), total


# -- running in a process -------------------------------------------------------------------


def serve(cfg: WorkerConfig, index: int, conn: Any) -> None:
    """A worker process's loop: commands in, results out, over `conn` (a Pipe end)."""
    gc.freeze()
    w = Worker(cfg, index)
    last = [time.monotonic(), 0]

    def progress(n: int) -> None:
        last[1] += n
        now = time.monotonic()
        if now - last[0] >= 0.2:
            conn.send(("progress", last[1]))
            last[0], last[1] = now, 0

    def flush_progress() -> None:
        if last[1]:
            conn.send(("progress", last[1]))
            last[1] = 0

    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        op = msg[0]
        try:
            if op == "chunk":
                conn.send(("chunk", w.chunk(msg[1])))
            elif op == "range":
                conn.send(("range", w.range(*msg[1:])))
            elif op == "flush":
                conn.send(("flush", w.flush()))
            elif op == "pass1":
                got = w.pass1(msg[1], msg[2], progress)
                flush_progress()
                conn.send(("pass1", msg[1], *got))
            elif op == "pass2":
                got2 = w.pass2(msg[1], msg[2], msg[3], progress)
                flush_progress()
                conn.send(("pass2", msg[1], *got2))
            elif op == "stop":
                return
        except Exception as exc:  # reported to the main process, which stops
            import traceback

            conn.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
