"""`tracesieve audit`: the main process.

1. Config and inputs first: a config error, an unreadable input or an input of unknown
   format stops here (exit 2) before anything is read.
2. The workers are started (forked, `--workers`, default: the CPU count; one runs in this
   process).
3. Reading: this process reads every input in turn and hands its messages, in chunks of
   about 4 MiB, to the workers, which decode them and spill every span to its trace's
   bucket on disk (`partition`).
4. First pass: the buckets are dealt into partitions; each worker takes partitions in turn
   and runs the processors over them with the timing check off. The sketches of clean
   traces' durations per task class come back and are merged: the medians.
5. Second pass: each partition again, with the medians: the traces they make slow (all
   traces with `--output`) go through the processors again so that `cleanliness` decides
   them; the partitions' tallies come back and add up to the report.
6. The report: on the terminal, and as `--report-json` / `--report-html`; `--output`'s
   parts are joined in partition order.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any

from pipeline.audit import inputs as inputs_mod
from pipeline.audit.chain import ChainSpec, spec_from_config
from pipeline.audit.inputs import InputError, Message, Problem, Source
from pipeline.audit.partition import plan
from pipeline.audit.progress import Progress
from pipeline.audit.records import Tally
from pipeline.audit.report import build, render, write_json
from pipeline.audit.worker import ChunkResult, Item, Worker, WorkerConfig, serve
from pipeline.errors import ConfigError
from processors.cleanliness import CLASSES

__all__ = ["Options", "run"]

CHUNK_BYTES = 4 << 20
CHUNK_ITEMS = 512
PROTO_SUFFIXES = (".pb", ".binpb", ".proto", ".protobuf")
_EXAMPLES = 50


@dataclass
class Options:
    inputs: list[str]
    config: list[str] | None = None
    report_json: str | None = None
    report_html: str | None = None
    output: str | None = None
    keep: str | None = None
    workers: int | None = None
    strict: bool = False
    quiet: bool = False
    spill_dir: str | None = None
    partition_mib: int = 256
    dataset: str | None = None
    dataset_format: str | None = None


class UsageError(InputError):
    pass


def _writable(path: str, what: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"{what} {path}: no directory {folder}")
    if os.path.isdir(path):
        raise UsageError(f"{what} {path}: is a directory")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise UsageError(f"{what} {path}: not writable")


def _dataset(opts: Options, spec: ChainSpec) -> Any:
    """The dataset exporter's config for --dataset: the block of `--config`'s `dataset`
    exporter when it has one (else the defaults), with --dataset's path and
    --dataset-format's format."""
    if opts.dataset_format and not opts.dataset:
        raise UsageError("--dataset-format: needs --dataset")
    if not opts.dataset:
        return None
    import msgspec

    from pipeline.exporters.dataset import DatasetConfig

    base = spec.dataset if isinstance(spec.dataset, DatasetConfig) else DatasetConfig()
    fmt = opts.dataset_format or base.format
    if fmt not in ("openai_chat", "hf_chat"):
        raise UsageError(f"--dataset-format: unknown format {fmt!r} (openai_chat or hf_chat)")
    cfg = msgspec.structs.replace(base, path=opts.dataset, format=fmt)
    errs = cfg.validate()
    if errs:
        raise ConfigError([f"exporters::dataset::{e}" for e in errs])
    _writable(opts.dataset, "--dataset")
    vpath = cfg.validation_path()
    if vpath:
        _writable(vpath, "--dataset (its validation file)")
    return cfg


def _keep(opts: Options) -> frozenset[str]:
    if opts.keep is None:
        return frozenset()
    if not opts.output:
        raise UsageError("--keep: needs --output (it says which classes go there)")
    got = [c.strip() for c in opts.keep.split(",") if c.strip()]
    bad = [c for c in got if c not in CLASSES]
    if bad or not got:
        raise UsageError(
            f"--keep: unknown class {', '.join(bad) or '(none)'}: want some of {', '.join(CLASSES)}"
        )
    return frozenset(got)


# -- the workers ----------------------------------------------------------------------------


class Pool:
    """The workers: in processes (forked), or this process's own for one."""

    def __init__(self, cfg: WorkerConfig, n: int, progress: Progress) -> None:
        self.n = n
        self.progress = progress
        self.local: Worker | None = None
        self.conns: list[Any] = []
        self.procs: list[Any] = []
        self.outstanding = [0] * n
        if n == 1:
            self.local = Worker(cfg, 0)
            return
        ctx = multiprocessing.get_context("fork")
        for i in range(n):
            parent, child = ctx.Pipe()
            p = ctx.Process(
                target=serve, args=(cfg, i, child), daemon=True, name=f"audit-worker-{i}"
            )
            p.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(p)

    def stop(self) -> None:
        for c in self.conns:
            with contextlib.suppress(OSError, ValueError):
                c.send(("stop",))
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)

    def _recv(self, conn: Any) -> Any:
        try:
            msg = conn.recv()
        except EOFError:
            raise RuntimeError("an audit worker died (out of memory?)") from None
        if msg[0] == "error":
            sys.stderr.write(msg[2])
            raise RuntimeError(f"an audit worker failed: {msg[1]}")
        return msg

    def replies(self) -> list[tuple[int, Any]]:
        """Wait for replies (progress reports are applied, not returned)."""
        out = []
        for conn in wait([c for i, c in enumerate(self.conns) if self.outstanding[i]]):
            i = self.conns.index(conn)
            msg = self._recv(conn)
            if msg[0] == "progress":
                self.progress.advance(msg[1])
                continue
            self.outstanding[i] -= 1
            out.append((i, msg))
        return out


# -- the run ----------------------------------------------------------------------------------


@dataclass
class _Read:
    messages: int = 0
    spans: int = 0
    rejected: int = 0
    bad_messages: int = 0
    problems: Counter[str] = field(default_factory=Counter)
    examples: list[dict[str, str]] = field(default_factory=list)
    per_source: dict[int, list[int]] = field(default_factory=dict)  # messages, spans, bytes

    def problem(self, kind: str, where: str, what: str) -> None:
        self.problems[kind] += 1
        self.example(kind, where, what)

    def example(self, kind: str, where: str, what: str) -> None:
        if len(self.examples) < _EXAMPLES:
            self.examples.append({"kind": kind, "where": where, "problem": what})


def _where(src: Source, ordinal: int, offset: int) -> str:
    if src.format == "json_lines":
        return f"{src.name}:{ordinal}"
    if src.format in ("proto_frames", "zstd_frames"):
        return f"{src.name}: frame {ordinal} (byte {offset}{' of the decompressed stream' if src.compression else ''})"
    if src.format == "kafka":
        return f"{src.name}: partition {offset} offset {ordinal}"
    return src.name


def _bad_kind(src: Source) -> str:
    if src.format == "json_lines":
        return "bad_lines"
    if src.format in ("proto_frames", "zstd_frames", "kafka"):
        return "bad_frames"
    return "bad_files"


def run(opts: Options) -> int:
    started = time.monotonic()
    spec = spec_from_config(opts.config)  # ConfigError: exit 2
    keep = _keep(opts)
    dataset = _dataset(opts, spec)
    for path, what in (
        (opts.report_json, "--report-json"),
        (opts.report_html, "--report-html"),
        (opts.output, "--output"),
    ):
        if path:
            _writable(path, what)
    if opts.partition_mib < 1:
        raise UsageError("--partition-mib: at least 1")
    sources = inputs_mod.expand(opts.inputs)
    for src in sources:
        inputs_mod.probe(src)
    n = opts.workers or os.cpu_count() or 1
    if n < 1:
        raise UsageError("--workers: at least 1")
    output_kind = ""
    if opts.output:
        output_kind = "proto" if opts.output.lower().endswith(PROTO_SUFFIXES) else "json"
    directory = tempfile.mkdtemp(prefix="tracesieve-audit-", dir=opts.spill_dir)
    phases: dict[str, float] = {}
    progress = Progress(enabled=not opts.quiet and sys.stderr.isatty())
    pool: Pool | None = None
    dataset_summary: dict[str, Any] | None = None
    try:
        cfg = WorkerConfig(spec, directory, n, output_kind, keep, dataset)
        pool = Pool(cfg, n, progress)
        phases["start"] = time.monotonic() - started
        read = _read_inputs(pool, sources, spec, progress)
        phases["reading"] = time.monotonic() - started - sum(phases.values())
        tally, medians, partitions, again, conventions, ds_counts = _passes(
            pool, cfg, spec, read, opts, progress, phases
        )
        if opts.output:
            _join_output(directory, partitions, opts.output)
        if dataset is not None:
            from pipeline.audit.dataset import merge

            t0 = time.monotonic()
            parts = [os.path.join(directory, f"p{pid}.dataset") for pid in range(len(partitions))]
            dataset_summary = merge(dataset, parts, ds_counts)
            phases["dataset"] = time.monotonic() - t0
    finally:
        progress.close()
        if pool is not None:
            pool.stop()
        shutil.rmtree(directory, ignore_errors=True)
    elapsed = time.monotonic() - started
    report = build(
        tally,
        inputs=[
            {
                "name": s.name,
                "format": s.format,
                "compression": s.compression or None,
                "bytes": read.per_source.get(i, [0, 0, 0])[2] or s.size,
                "messages": read.per_source.get(i, [0, 0, 0])[0],
                "spans": read.per_source.get(i, [0, 0, 0])[1],
            }
            for i, s in enumerate(sources)
        ],
        read={
            "messages": read.messages,
            "spans": read.spans,
            "rejected": read.rejected,
            "bad_messages": read.bad_messages,
        },
        problems={
            "bad_lines": read.problems["bad_lines"],
            "bad_frames": read.problems["bad_frames"],
            "bad_files": read.problems["bad_files"],
            "spans_without_ids": read.rejected,
            "examples": read.examples,
        },
        medians=medians,
        cleanliness=spec.cleanliness,
        config_source=spec.source,
        conventions=conventions,
        run={
            "workers": n,
            "partitions": len(partitions),
            "seconds": round(elapsed, 3),
            "spans_per_second": round(read.spans / elapsed, 1) if elapsed > 0 else 0.0,
            "second_pass_traces": again,
            "phases_seconds": {k: round(v, 3) for k, v in phases.items()},
            "output": opts.output,
            "output_format": output_kind or None,
            "kept_classes": sorted(keep) if keep else None,
        },
    )
    if dataset_summary is not None:
        report["dataset"] = dataset_summary
    render(report, sys.stdout)
    if opts.report_json:
        write_json(report, opts.report_json)
    if opts.report_html:
        from pipeline.audit.html import render_html

        tmp = f"{opts.report_html}.tmp{os.getpid()}"
        with open(tmp, "w") as fh:
            fh.write(render_html(report))
        os.replace(tmp, opts.report_html)
    if sum(read.problems.values()) or read.rejected:
        parts = [f"{v:,} {k.replace('_', ' ')}" for k, v in read.problems.items() if v]
        if read.rejected:
            parts.append(f"{read.rejected:,} spans without usable ids")
        sys.stderr.write(
            f"tracesieve audit: warning: problems in the input ({', '.join(parts)}); "
            "the rest was audited (see 'Problems in the input')\n"
        )
        if opts.strict:
            return 1
    return 0


def _read_inputs(pool: Pool, sources: list[Source], spec: ChainSpec, progress: Progress) -> _Read:
    """Every input to the workers: plain files of frames or JSON lines in ranges the
    workers read themselves; other inputs (stdin, compressed files, documents, Kafka) read
    here and handed over in chunks of messages."""
    read = _Read()
    sizes = [s.size for s in sources]
    total = sum(x for x in sizes if x) if all(x is not None for x in sizes) else None
    progress.phase("reading", total, "bytes")
    chunk: list[Item] = []
    size = 0
    # JSON lines read in ranges: their lines are numbered within the range until the
    # ranges before are counted. (source, range) -> lines; the examples waiting for it
    lines: dict[tuple[int, int], int] = {}
    waiting: list[
        tuple[str, int, int, int, int, str]
    ] = []  # kind, source, range, line, offset, what
    jobs: list[deque[tuple[int, int]]] = [deque() for _ in range(pool.n)]  # (source, range)

    def handle(res: ChunkResult, job: tuple[int, int] | None) -> None:
        read.messages += res.messages
        read.spans += res.spans
        read.rejected += res.rejected
        read.bad_messages += sum(res.bad_by_source.values())
        if res.bytes:
            progress.advance(res.bytes)
        progress.spans(res.spans)
        for si, counts in res.by_source.items():
            got = read.per_source.setdefault(si, [0, 0, 0])
            got[0] += counts[0]
            got[1] += counts[1]
        for si, bad_n in res.bad_by_source.items():
            read.problems[_bad_kind(sources[si])] += bad_n
        numbered_later = job is not None and sources[job[0]].format == "json_lines"
        if job is not None:
            lines[job] = res.lines
        found = [(_bad_kind(sources[e[0]]), e) for e in res.bad]
        found += [("spans_without_ids", e) for e in res.rejected_examples]
        for kind, (si, ordinal, offset, what) in found:
            if numbered_later and job is not None:
                waiting.append((kind, si, job[1], ordinal, offset, what))
            else:
                read.example(kind, _where(sources[si], ordinal, offset), what)

    def send(op: tuple[Any, ...], job: tuple[int, int] | None) -> None:
        while min(pool.outstanding) >= 2:
            for i, msg in pool.replies():
                handle(msg[1], jobs[i].popleft())
        i = pool.outstanding.index(min(pool.outstanding))
        pool.conns[i].send(op)
        pool.outstanding[i] += 1
        jobs[i].append(job if job is not None else (-1, -1))

    def submit(items: list[Item]) -> None:
        if pool.local is not None:
            handle(pool.local.chunk(items), None)
        else:
            send(("chunk", items), None)

    for si, src in enumerate(sources):
        counts = read.per_source.setdefault(si, [0, 0, 0])
        if inputs_mod.splittable(src):
            assert src.path is not None
            counts[2] = src.size or 0
            for ri, r in enumerate(inputs_mod.ranges(src)):
                if isinstance(r, Problem):
                    read.problem(r.kind, r.where, r.what)
                    continue
                if pool.local is not None:
                    handle(pool.local.range(si, src.path, src.format, r), (si, ri))
                else:
                    send(("range", si, src.path, src.format, r), (si, ri))
            continue

        def on_bytes(k: int, counts: list[int] = counts) -> None:
            counts[2] += k
            progress.advance(k)

        for item in inputs_mod.read(src, on_bytes, spec.kafka):
            if isinstance(item, Problem):
                read.problem(item.kind, item.where, item.what)
                continue
            assert isinstance(item, Message)
            chunk.append((item.kind, item.data, si, item.ordinal, item.offset))
            size += len(item.data)
            if size >= CHUNK_BYTES or len(chunk) >= CHUNK_ITEMS:
                submit(chunk)
                chunk, size = [], 0
    if chunk:
        submit(chunk)
    while any(pool.outstanding):
        for i, msg in pool.replies():
            job = jobs[i].popleft()
            handle(msg[1], job if job[0] >= 0 else None)
    for kind, si, ri, line, offset, what in sorted(waiting, key=lambda w: (w[1], w[2], w[3])):
        base = sum(lines.get((si, k), 0) for k in range(ri))
        read.example(kind, _where(sources[si], base + line, offset), what)
    return read


def _sizes(pool: Pool) -> dict[int, int]:
    per_bucket: Counter[int] = Counter()
    if pool.local is not None:
        per_bucket.update(pool.local.flush())
        return dict(per_bucket)
    for i, c in enumerate(pool.conns):
        c.send(("flush",))
        pool.outstanding[i] += 1
    while any(pool.outstanding):
        for _, msg in pool.replies():
            per_bucket.update(msg[1])
    return dict(per_bucket)


def _dispatch(pool: Pool, jobs: list[tuple[Any, ...]], local: Any) -> list[Any]:
    """Run jobs (command tuples) on the workers, each taking the next when free; the
    replies in job order."""
    results: list[Any] = [None] * len(jobs)
    if pool.local is not None:
        for j, job in enumerate(jobs):
            results[j] = local(job)
        return results
    queue = list(enumerate(jobs))
    running: dict[int, int] = {}  # worker -> job index
    while queue or running:
        for i in range(pool.n):
            if queue and i not in running:
                j, job = queue.pop(0)
                pool.conns[i].send(job)
                pool.outstanding[i] += 1
                running[i] = j
        for i, msg in pool.replies():
            results[running.pop(i)] = msg
    return results


def _passes(
    pool: Pool,
    cfg: WorkerConfig,
    spec: ChainSpec,
    read: _Read,
    opts: Options,
    progress: Progress,
    phases: dict[str, float],
) -> tuple[
    Tally,
    dict[str, tuple[float, int]],
    list[list[int]],
    int,
    set[str],
    list[dict[str, dict[str, int]]],
]:
    sizes = _sizes(pool)
    partitions = plan(sizes, pool.n, opts.partition_mib << 20)
    audited = read.spans - read.rejected
    progress.phase("auditing", audited, "spans")

    def local1(job: tuple[Any, ...]) -> Any:
        assert pool.local is not None
        return ("pass1", job[1], *pool.local.pass1(job[1], job[2], progress.advance))

    t0 = time.monotonic()
    got = _dispatch(pool, [("pass1", pid, b) for pid, b in enumerate(partitions)], local1)
    phases["first_pass"] = time.monotonic() - t0
    merged: dict[str, Any] = {}
    conventions: set[str] = set()
    tally = Tally()
    for msg in got:
        conventions |= msg[4]
        tally.merge(msg[5])
        for task, sketch in msg[2].items():
            have = merged.get(task)
            if have is None:
                merged[task] = sketch
            else:
                have.merge(sketch)
    timing = spec.cleanliness.timing
    medians = {
        task: (float(s.get_quantile_value(0.5)), int(s.count))
        for task, s in merged.items()
        if s.count
    }
    fixed = {task: m for task, (m, k) in medians.items() if k >= timing.min_samples and m > 0}
    progress.phase("timing", audited if cfg.output else None, "spans")

    def local2(job: tuple[Any, ...]) -> Any:
        assert pool.local is not None
        return ("pass2", job[1], *pool.local.pass2(job[1], job[2], job[3], progress.advance))

    t0 = time.monotonic()
    got = _dispatch(pool, [("pass2", pid, b, fixed) for pid, b in enumerate(partitions)], local2)
    phases["second_pass"] = time.monotonic() - t0
    again = 0
    ds_counts: list[dict[str, dict[str, int]]] = []
    for msg in got:
        tally.merge(msg[2])
        again += msg[3]
        if msg[4] is not None:
            ds_counts.append(msg[4])
    return tally, medians, partitions, again, conventions, ds_counts


def _join_output(directory: str, partitions: list[list[int]], path: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as out:
        for pid in range(len(partitions)):
            part = os.path.join(directory, f"p{pid}.out")
            if os.path.exists(part):
                with open(part, "rb") as fh:
                    shutil.copyfileobj(fh, out, 1 << 20)
    os.replace(tmp, path)
