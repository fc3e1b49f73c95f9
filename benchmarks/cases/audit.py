"""`audit`: `tracesieve audit` on a generated dump of `--spans` spans, in both formats
(length-prefixed protobuf and OTLP JSON lines, as the `file` exporter writes them).

The dump: the agent-trace generator's traces (`--templates` of them, every convention and
fault at the default rates) repeated with fresh trace ids (`LoadStream`) until there are
`--spans` spans, whole traces, ~2,000 spans a message. The command runs as a user runs it
(`python -m pipeline audit DUMP --workers N --quiet --report-json ...`, all CPUs by
default); measured per format, best of `--repeat`:

- `spans_per_s`: spans read / the command's wall time (start-up included);
- `cpu_s`, `cpu_us_per_span`: CPU time of the command and its workers; `cores_used`: CPU
  seconds per wall second (on a shared machine, less than the workers: the others' load);
- `peak_rss_mib`: the largest sum of the resident memory of the command and its workers
  at any time (sampled every 20 ms), and of the largest single process;
- the decode floor, measured in the same run on the same dump: every message decoded and
  nothing else, on one core (protobuf: `ExportTraceServiceRequest.FromString`; JSON:
  `msgspec.json.decode` into Python objects, the cheapest generic JSON decode), in spans
  per CPU-second, and that times the workers (`floor_spans_per_s`): what N cores could
  decode at best; `vs_floor` is the audit's spans/s over it.

Targets (2 cores): >= 250,000 spans/s from protobuf, >= 120,000 from JSON, <= 2 GiB RSS.

`--dataset` (case `audit_dataset`): the cost of `--dataset` (docs/dataset.md). The dump
is protobuf of traces whose LLM calls carry their conversations (`Generator(content=True)`,
every convention), and the audit runs alone and with `--dataset FILE`, in turns, `--repeat`
times each; the best (least CPU) of each is kept. `cpu_ratio` and `wall_ratio`: with over
without. Target: <= 1.5.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import msgspec
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from benchmarks.common import emit
from benchmarks.generator import LoadStream
from pipeline import otlpjson

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGETS = {"proto": 250_000, "json": 120_000}
RSS_TARGET_MIB = 2048
DATASET_TARGET_RATIO = 1.5


# -- the dump ---------------------------------------------------------------------------------


def write_content_dump(directory: str, spans: int, templates: int, seed: int) -> dict[str, Any]:
    """A protobuf dump of traces whose LLM calls carry their conversations."""
    stream = LoadStream(seed, templates=templates, content=True)
    path = os.path.join(directory, "content.pb")
    made = 0
    with open(path, "wb") as pb:
        for raw, n in stream.requests(spans, spans_per_request=2000):
            pb.write(struct.pack(">I", len(raw)) + raw)
            made += n
    return {"path": path, "spans": made, "bytes": os.path.getsize(path)}


def write_dumps(directory: str, spans: int, templates: int, seed: int) -> dict[str, Any]:
    """Both dumps of the same traces; (path, spans, bytes) per format."""
    stream = LoadStream(seed, templates=templates)
    # each template's resource spans as a JSON fragment, its trace id in hex, once
    fragments: dict[bytes, tuple[str, str]] = {}
    for tid, body, _, _ in stream.templates:
        req = ExportTraceServiceRequest.FromString(body)
        text = otlpjson.encode(req).decode()
        head = '{"resourceSpans":['
        assert text.startswith(head) and text.endswith("]}")
        fragments[body] = (text[len(head) : -2], tid.hex())
    paths = {
        "proto": os.path.join(directory, "dump.pb"),
        "json": os.path.join(directory, "dump.jsonl"),
    }
    made = 0
    with open(paths["proto"], "wb") as pb, open(paths["json"], "w") as js:
        for raw, n in stream.requests(spans, spans_per_request=2000):
            pb.write(struct.pack(">I", len(raw)) + raw)
            made += n
        # the same traces again, as JSON: the requests are re-made from the same seed
        again = LoadStream(seed, templates=templates)
        for raw, _ in _json_requests(again, spans, fragments):
            js.write(raw)
    return {
        fmt: {"path": p, "spans": made, "bytes": os.path.getsize(p)} for fmt, p in paths.items()
    }


def _json_requests(
    stream: LoadStream,
    spans: int,
    fragments: dict[bytes, tuple[str, str]],
) -> Any:
    """`LoadStream.requests`' traces as OTLP JSON lines (fresh trace ids as hex)."""
    r = stream._r  # the same draws as `requests`: same traces, same ids
    k = len(stream.templates)
    i = r.randrange(k)
    made = 0
    parts: list[str] = []
    n = 0
    while made < spans:
        _, body, count, _ = stream.templates[i % k]
        i += 1
        frag, hex_id = fragments[body]
        parts.append(frag.replace(hex_id, r.getrandbits(128).to_bytes(16, "big").hex()))
        n += count
        made += count
        if n >= 2000:
            yield '{"resourceSpans":[' + ",".join(parts) + "]}\n", n
            parts, n = [], 0
    if parts:
        yield '{"resourceSpans":[' + ",".join(parts) + "]}\n", n


# -- the decode floor ---------------------------------------------------------------------------


def floor(path: str, fmt: str) -> dict[str, Any]:
    """Every message of the dump decoded, nothing else, on this core: spans per CPU-s."""
    spans = 0
    cpu = 0.0
    with open(path, "rb") as fh:
        data = fh.read()
    if fmt == "proto":
        parse = ExportTraceServiceRequest.FromString
        pos = 0
        while pos < len(data):
            (n,) = struct.unpack_from(">I", data, pos)
            raw = data[pos + 4 : pos + 4 + n]
            pos += 4 + n
            t0 = time.process_time()
            msg = parse(raw)
            cpu += time.process_time() - t0
            spans += sum(len(ss.spans) for rs in msg.resource_spans for ss in rs.scope_spans)
        how = "ExportTraceServiceRequest.FromString (upb)"
    else:
        dec = msgspec.json.Decoder()
        import gc

        gc.disable()
        for line in data.splitlines():
            t0 = time.process_time()
            obj = dec.decode(line)
            cpu += time.process_time() - t0
            spans += sum(len(ss["spans"]) for rs in obj["resourceSpans"] for ss in rs["scopeSpans"])
            del obj
        gc.enable()
        how = "msgspec.json.decode into Python objects"
    return {"decode": how, "spans_per_cpu_s": round(spans / cpu) if cpu else None}


# -- running the command ------------------------------------------------------------------------


def _tree(pid: int) -> list[int]:
    out = [pid]
    i = 0
    while i < len(out):
        p = out[i]
        i += 1
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    out += [int(x) for x in fh.read().split()]
        except OSError:
            continue
    return out


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_audit(path: str, workers: int, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    out = path + ".report.json"
    cmd = [
        sys.executable,
        "-m",
        "pipeline",
        "audit",
        path,
        "--workers",
        str(workers),
        "--quiet",
        "--report-json",
        out,
        *extra,
    ]
    env = {**os.environ, "PYTHONPATH": ROOT}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    peak = [0, 0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            sizes = [_rss_kib(p) for p in _tree(proc.pid)]
            peak[0] = max(peak[0], sum(sizes))
            peak[1] = max(peak[1], max(sizes, default=0))
            done.wait(0.02)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    _, err = proc.communicate()
    wall = time.perf_counter() - t0
    done.set()
    t.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"audit failed ({proc.returncode}): {err.decode()[-2000:]}")
    with open(out) as fh:
        report = json.load(fh)
    os.unlink(out)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    spans = report["totals"]["spans_read"]
    return {
        "spans": spans,
        "traces": report["totals"]["traces"],
        "wall_s": round(wall, 3),
        "spans_per_s": round(spans / wall),
        "cpu_s": round(cpu, 3),
        "cpu_us_per_span": round(cpu / spans * 1e6, 3),
        "peak_rss_mib": round(peak[0] / 1024, 1),
        "peak_rss_largest_process_mib": round(peak[1] / 1024, 1),
        "cores_used": round(cpu / wall, 2),  # CPU-s per wall-s: what the machine gave it
        "phases_seconds": report["run"].get("phases_seconds"),
        "partitions": report["run"]["partitions"],
        "classes": {c["class"]: c["traces"] for c in report["classes"]},
        **({"dataset": report["dataset"]} if "dataset" in report else {}),
    }


def dataset_case(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="tracesieve-bench-dataset-", dir=args.dir) as d:
        t0 = time.perf_counter()
        dump = write_content_dump(d, args.spans, args.templates, args.seed)
        made_s = time.perf_counter() - t0
        out = os.path.join(d, "train.jsonl")
        alone: list[dict[str, Any]] = []
        with_ds: list[dict[str, Any]] = []
        for _ in range(args.repeat):
            alone.append(run_audit(dump["path"], args.workers))
            with_ds.append(run_audit(dump["path"], args.workers, ("--dataset", out)))
        examples = os.path.getsize(out)
    a = min(alone, key=lambda r: r["cpu_s"])
    w = min(with_ds, key=lambda r: r["cpu_s"])
    cpu_ratio = round(w["cpu_s"] / a["cpu_s"], 3)
    wall_ratio = round(w["wall_s"] / a["wall_s"], 3)
    emit(
        "audit_dataset",
        {
            "spans": dump["spans"],
            "bytes": dump["bytes"],
            "workers": args.workers,
            "templates": args.templates,
            "dump_seconds": round(made_s, 1),
            "audit": a,
            "audit_with_dataset": w,
            "dataset_bytes": examples,
            "cpu_ratio": cpu_ratio,
            "wall_ratio": wall_ratio,
            "target_ratio": DATASET_TARGET_RATIO,
            "met": cpu_ratio <= DATASET_TARGET_RATIO and wall_ratio <= DATASET_TARGET_RATIO,
            "runs": {"audit": alone, "audit_with_dataset": with_ds} if args.repeat > 1 else None,
        },
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--spans", type=int, default=1_000_000)
    p.add_argument("--templates", type=int, default=1000, help="distinct generated traces")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--repeat", type=int, default=1, help="runs per format; the best is kept")
    p.add_argument("--formats", default="proto,json")
    p.add_argument("--dir", default=None, help="where the dumps go (default: a temp dir)")
    p.add_argument(
        "--dataset",
        action="store_true",
        help="the cost of --dataset: a dump with conversations, audited without and with it",
    )
    args = p.parse_args()
    if args.dataset:
        dataset_case(args)
        return
    formats = [f for f in args.formats.split(",") if f]
    with tempfile.TemporaryDirectory(prefix="tracesieve-bench-audit-", dir=args.dir) as d:
        t0 = time.perf_counter()
        dumps = write_dumps(d, args.spans, args.templates, args.seed)
        made_s = time.perf_counter() - t0
        results: dict[str, Any] = {}
        for fmt in formats:
            dump = dumps[fmt]
            fl = floor(dump["path"], fmt)
            runs = [run_audit(dump["path"], args.workers) for _ in range(args.repeat)]
            best = max(runs, key=lambda r: r["spans_per_s"])
            floor_n = fl["spans_per_cpu_s"] * args.workers if fl["spans_per_cpu_s"] else None
            results[fmt] = {
                **best,
                "bytes": dump["bytes"],
                "target_spans_per_s": TARGETS[fmt],
                "met": best["spans_per_s"] >= TARGETS[fmt]
                and best["peak_rss_mib"] <= RSS_TARGET_MIB,
                "floor": fl,
                "floor_spans_per_s": floor_n,
                "vs_floor": round(best["spans_per_s"] / floor_n, 3) if floor_n else None,
                "runs": runs if len(runs) > 1 else None,
            }
    emit(
        "audit",
        {
            **{fmt: results[fmt] for fmt in formats},
            "spans": args.spans,
            "workers": args.workers,
            "templates": args.templates,
            "dump_seconds": round(made_s, 1),
            "rss_target_mib": RSS_TARGET_MIB,
        },
    )


if __name__ == "__main__":
    main()
