"""The benchmark tables, from `benchmarks/results/*.json`.

    python -m benchmarks.report             # rewrite the tables in docs/benchmarks.md and
                                            # the headline figures in README.md
    python -m benchmarks.report --print     # print the table only

In `docs/benchmarks.md` (`--doc`): the table goes between `<!-- bench:start -->` and
`<!-- bench:end -->` (under `## Results`; the markers are added at the end of that section
when missing). One row per figure: what was measured, the target, the ratio to the floor
measured in the same run (spans per CPU-second of the collector over the floor's), the
machine, the date, the load average (1 min) when the case started and ended, and the
command that reproduces it. Between `<!-- profile:start -->` and `<!-- profile:end -->`,
when the page has them: the agent pipeline's profile summary; between
`<!-- profile:latency:start -->` and `<!-- profile:latency:end -->`, the `latency` case's.

In `README.md` (`--readme`), between `<!-- bench:headline:start -->` and
`<!-- bench:headline:end -->` when it has them: the three headline figures (agent
pipeline, pass-through, added latency p99), linking to the full table. `tests/test_docs.py`
checks that both files hold what this module renders from the committed results.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from typing import Any

NONE = "-"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
PSTART, PEND = "<!-- profile:start -->", "<!-- profile:end -->"
HSTART, HEND = "<!-- bench:headline:start -->", "<!-- bench:headline:end -->"
SECTION = "## Results"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DOC = os.path.join(ROOT, "docs", "benchmarks.md")
README_MD = os.path.join(ROOT, "README.md")
# where the headline figures in README.md link to (relative to it)
DOC_LINK = "docs/benchmarks.md#results"
ORDER = [
    "floor",
    "receive_floor",
    "passthrough",
    "agent_pipeline",
    "two_process",
    "audit",
    "audit_dataset",
    "kafka",
    "processors",
    "latency",
    "live_view",
    "memory",
    "accuracy",
]


def load(results: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path in glob.glob(os.path.join(results, "*.json")):
        with open(path) as fh:
            try:
                r = json.load(fh)
            except json.JSONDecodeError:
                continue
        if isinstance(r, dict) and "case" in r:
            out[r["case"]] = r
    return {k: out[k] for k in sorted(out, key=lambda k: [*ORDER, k].index(k))}


def _pauses(r: dict[str, Any]) -> str:
    """The latency case: over how many rounds the headline is, and all rounds' figure."""
    every = r.get("all_rounds")
    if not every:
        return ""
    return (
        f", over the {r['undisturbed_rounds']} of {every['rounds']} rounds no machine pause "
        f"disturbed (all rounds: p50 {every['added_p50_ms']}, p99 {every['added_p99_ms']} ms)"
    )


def _round_p99(x: dict[str, Any]) -> str:
    if not x.get("disturbed"):
        return str(x["added_p99_ms"])
    worst = max(ph["longest_ms"] for ph in x["pauses"].values())
    return f"{x['added_p99_ms']} (paused {worst:g} ms)"


def _n(x: float | None) -> str:
    return NONE if x is None else f"{x:,.0f}"


def _share(x: float | None) -> str:
    """A share as a percentage (None: a run that measured none, e.g. every pair paused)."""
    return NONE if x is None else f"{x:.0%}"


def _machine(r: dict[str, Any]) -> str:
    m = r.get("machine", {})
    return f"{m.get('cpu', '?')} x{m.get('cpus', '?')}, Python {m.get('python', '?')}"


def _load(r: dict[str, Any]) -> str:
    b, a = r.get("loadavg_before"), r.get("loadavg_after")
    if not b or not a:
        return NONE
    return f"{b[0]:.2f} → {a[0]:.2f}"


def _ratio(r: dict[str, Any], rate: float | None, floor: dict[str, Any] | None) -> str:
    if rate is None or floor is None or not floor.get("spans_per_cpu_s"):
        return ""
    same = floor.get("run_id") is not None and floor.get("run_id") == r.get("run_id")
    ratio = f"{rate / floor['spans_per_cpu_s']:.3f}"
    return ratio if same else f"{ratio} (floor of another run)"


def rows(records: dict[str, dict[str, Any]]) -> list[tuple[str, ...]]:
    floor = records.get("floor")
    out: list[tuple[str, ...]] = []

    def add(r: dict[str, Any], figure: str, measured: str, target: str, rate: float | None) -> None:
        out.append(
            (
                figure,
                measured,
                target,
                _ratio(r, rate, floor),
                _machine(r),
                r.get("time", "?").replace("T", " ").rstrip("Z") + " UTC",
                _load(r),
                f"`{r.get('command', '?')}`",
            )
        )

    for name, r in records.items():
        if name == "floor":
            add(
                r,
                "floor: protobuf decode + encode, no network",
                f"{_n(r['spans_per_cpu_s'])} spans per CPU-s "
                f"({r.get('us_per_span')} µs/span; {r.get('spans_per_request')} spans/request)",
                NONE,
                r["spans_per_cpu_s"],
            )
        elif name == "receive_floor":
            add(
                r,
                "receive floor: bare grpc.aio server, decode only",
                f"{_n(r['spans_per_s'])} spans/s (collector CPU {r['collector_cpu']:.0%}; "
                f"{_n(r.get('spans_per_collector_cpu_s'))} per CPU-s)",
                NONE,
                r.get("spans_per_collector_cpu_s", r["spans_per_s"]),
            )
        elif name == "passthrough":
            add(
                r,
                "pass-through: OTLP → batch → otlp out",
                f"**{_n(r['spans_per_s'])} spans/s** (collector CPU {r['collector_cpu']:.0%}; "
                f"{_n(r.get('spans_per_collector_cpu_s'))} per CPU-s)",
                "≥ 150,000 spans/s",
                r.get("spans_per_collector_cpu_s", r["spans_per_s"]),
            )
        elif name == "agent_pipeline":
            procs = ", ".join(r.get("processors", []))
            add(
                r,
                f"agent pipeline: OTLP → {procs} → otlp out",
                f"**{_n(r['spans_per_s'])} spans/s** (collector CPU {r['collector_cpu']:.0%}; "
                f"{_n(r.get('spans_per_collector_cpu_s'))} per CPU-s)",
                "≥ 100,000 spans/s",
                r.get("spans_per_collector_cpu_s", r["spans_per_s"]),
            )
        elif name == "two_process":
            add(
                r,
                "agent pipeline, 2 processes on one port (SO_REUSEPORT)",
                f"{_n(r['two_process_spans_per_s'])} spans/s vs {_n(r['one_process_spans_per_s'])} "
                f"with one (x{r.get('speedup')})",
                NONE,
                None,  # two cores
            )
        elif name == "audit":
            for fmt, label, target in (
                ("proto", "length-prefixed protobuf", "≥ 250,000 spans/s, ≤ 2 GiB"),
                ("json", "OTLP JSON lines", "≥ 120,000 spans/s, ≤ 2 GiB"),
            ):
                a = r.get(fmt)
                if not a:
                    continue
                add(
                    r,
                    f"audit: {_n(a['spans'])}-span dump, {label}, {r.get('workers')} workers",
                    f"**{_n(a['spans_per_s'])} spans/s**, peak RSS {a['peak_rss_mib']:,.0f} MiB "
                    f"({a['cpu_us_per_span']} µs of CPU a span; decode floor "
                    f"{_n(a.get('floor_spans_per_s'))} spans/s: {a.get('vs_floor')} of it)",
                    target,
                    None,
                )
        elif name == "audit_dataset":
            a, w = r["audit"], r["audit_with_dataset"]
            add(
                r,
                f"audit --dataset: {_n(r['spans'])}-span dump with conversations, "
                f"{r.get('workers')} workers",
                f"**{r['cpu_ratio']}x CPU**, {r['wall_ratio']}x wall of the audit alone "
                f"({a['cpu_s']} → {w['cpu_s']} CPU-s)",
                f"≤ {r.get('target_ratio')}x",
                None,
            )
        elif name == "kafka":
            add(
                r,
                "kafka: OTLP → kafka exporter",
                f"{_n(r['exporter_spans_per_s'])} spans/s",
                NONE,
                r["runs"]["exporter"].get("spans_per_cpu_s"),
            )
            add(
                r,
                "kafka: kafka receiver → pipeline",
                f"{_n(r['receiver_spans_per_s'])} spans/s",
                NONE,
                r["runs"]["receiver"].get("spans_per_cpu_s"),
            )
        elif name == "processors":
            us = r["us_per_span"]
            parts = [f"{k} {v}" for k, v in us.items() if k != "decode"]
            add(
                r,
                "processors alone, µs per span (pre-decoded batches)",
                "; ".join(parts) + f" (decode: {us.get('decode')})",
                NONE,
                None,
            )
        elif name == "latency":
            add(
                r,
                "added latency, span-local path, at half the maximum",
                f"p50 {r['added_p50_ms']} ms, p99 **{r['added_p99_ms']} ms** at {_n(r['spans_per_s'])} "
                f"spans/s (max {_n(r['max_spans_per_s'])})"
                + _pauses(r)
                + (
                    f"; {len(r['rounds'])} rounds, p99 "
                    + " / ".join(_round_p99(x) for x in r["rounds"])
                    + " ms, collector CPU "
                    + " / ".join(f"{x['collector_cpu']:.0%}" for x in r["rounds"])
                    if r.get("rounds")
                    else ""
                )
                + (
                    ", its run-queue wait "
                    + " / ".join(f"{x['collector_wait']:.1%}" for x in r["rounds"])
                    + ", steal "
                    + " / ".join(f"{x['steal']:.1%}" for x in r["rounds"])
                    if r.get("rounds") and "steal" in r["rounds"][0]
                    else ""
                )
                + (
                    f"; CPU a span {r['cpu_per_span_vs_max']} of closed loop's"
                    if r.get("cpu_per_span_vs_max")
                    else ""
                ),
                "p99 ≤ 5 ms",
                None,
            )
        elif name == "live_view":
            mid = r["cpu_b_over_a"]["middle_half"]
            cost = r["view_cost"]
            add(
                r,
                "live view's cost: agent pipeline with vs without it, a page's stream open",
                (f"**{cost:+.1%} CPU**" if cost is not None else "no undisturbed pair")
                + f" a trace (B/A {r['cpu_b_over_a']['median']}, "
                f"middle half {' to '.join(str(x) for x in mid)}, "
                f"{r['cpu_b_over_a']['pairs']} pairs) at {_n(r['traces_per_s'])} traces/s "
                f"({_n(r['spans_per_s'])} spans/s; without: {r['A']['cpu_ms_per_trace']} ms "
                f"CPU a trace, {_share(r['A']['core_share'])} of a core)",
                "≤ +5%",
                None,
            )
        elif name == "memory":
            held = "; ".join(
                f"{_n(h['held_spans'])} spans: {h['rss_mib']:,.0f} MiB" for h in r["runs"]
            )
            add(r, "RSS with spans held in groupbytrace", held, "≤ 1,536 MiB for 1,000,000", None)
        elif name == "accuracy":
            f1, strict = r.get("macro_f1"), r.get("macro_f1_strict")
            also = f"; {strict} with strict_single_model" if strict is not None else ""
            add(
                r,
                "cleanliness accuracy (macro-F1)",
                f"**{f1}** on {_n(r.get('traces'))} generator traces{also}",
                "≥ 0.99",
                None,
            )
    return out


HEADER = (
    "figure",
    "measured",
    "target",
    "per collector CPU-s ÷ floor",
    "machine",
    "date",
    "load 1m (start → end)",
    "command",
)


def table(records: dict[str, dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in rows(records)]
    quick = [n for n, r in records.items() if r.get("quick")]
    if quick:
        lines.append(f"\n(quick runs, not figures: {', '.join(quick)})")
    return "\n".join(lines)


def block(records: dict[str, dict[str, Any]]) -> str:
    return (
        f"{START}\n<!-- generated by `python -m benchmarks.report` from benchmarks/results/*.json -->\n"
        f"{table(records)}\n{END}"
    )


# the cases whose record may carry a py-spy profile: their markers, and where it was taken
PROFILED = {
    "agent_pipeline": (
        (PSTART, PEND),
        "on the agent pipeline's collector for {seconds} s right after the measured windows "
        "of the run above",
    ),
    "latency": (
        ("<!-- profile:latency:start -->", "<!-- profile:latency:end -->"),
        "on the span-local path's collector (the `latency` case) for {seconds} s, open loop at "
        "the last round's half-load rate of {rate} spans/s, after the measured rounds of the "
        "run above",
    ),
}


def profile_block(records: dict[str, dict[str, Any]], case: str = "agent_pipeline") -> str:
    """A case's profile summary (the record's `profile`), as Markdown."""
    (start, end), where = PROFILED[case]
    r = records.get(case, {})
    prof = r.get("profile")
    lines = [start]
    if not prof or "top_total" not in prof:
        lines.append(f"(no profile in benchmarks/results/{case}.json)")
        return "\n".join([*lines, end])
    self_py = {f: pct for f, pct in prof.get("top_python", [])}
    seconds = prof.get("seconds", r.get("duration_s"))
    lines += [
        "py-spy (`--native`, 100 Hz) "
        + where.format(seconds=seconds, rate=_n(prof.get("rate_sent")))
        + f" ({r.get('time', '?')}), "
        f"{prof['samples']:,} samples ({prof.get('idle_samples', 0):,} more of threads waiting "
        f"in the kernel left out), at {_n(prof.get('spans_per_s'))} spans/s under the profiler: "
        f"`{prof['path']}`, summarised in `{prof['path'].replace('.txt', '.top.txt')}`. "
        "*Total*: samples with the function anywhere on the stack (itself and what it calls); "
        "*self*: samples where it was the innermost Python frame (C code it called included).",
        "",
        "| Python function | total % | self % |",
        "|---|---|---|",
    ]
    for f, pct in prof["top_total"][:18]:
        lines.append(f"| `{f}` | {pct} | {self_py.get(f, '')} |")
    native = prof.get("top_native", [])
    if native:
        lines += [
            "",
            "Native functions (total %): "
            + ", ".join(f"`{f.split(' (')[0]}` {pct}" for f, pct in native[:10])
            + ".",
        ]
    return "\n".join([*lines, end])


def headline(records: dict[str, dict[str, Any]]) -> str:
    """The three headline figures for README.md, between their markers."""
    lines = [HSTART, "| figure | measured |", "|---|---|"]
    ap, pt, lat = (records.get(k) for k in ("agent_pipeline", "passthrough", "latency"))
    if ap is not None:
        lines.append(
            "| agent pipeline: OTLP → groupbytrace, the three GenAI processors, cleanliness, "
            f"tail_sampling → OTLP | **{_n(ap['spans_per_s'])} spans/s** on one core |"
        )
    if pt is not None:
        lines.append(f"| pass-through: OTLP → batch → OTLP | **{_n(pt['spans_per_s'])} spans/s** |")
    if lat is not None and lat.get("added_p99_ms") is not None:
        lines.append(
            "| added latency, span-local path at half the maximum rate | "
            f"p99 **{lat['added_p99_ms']:.2f} ms** (p50 {lat['added_p50_ms']:.2f} ms) |"
        )
    shown = [r for r in (ap, pt, lat) if r is not None]
    if shown:
        first = shown[0]
        m = first.get("machine", {})
        quick = " (quick runs, not figures)" if any(r.get("quick") for r in shown) else ""
        lines += [
            "",
            f"Measured by `make bench` on {first.get('time', '?')[:10]}{quick}: "
            f"{m.get('cpu', '?')}, {m.get('cpus', '?')} CPUs, Python {m.get('python', '?')}, "
            "the collector pinned to one core. Every figure, its target, the machine and the "
            f"command that reproduces it: [{DOC_LINK.split('#')[0]}]({DOC_LINK}).",
        ]
    else:
        lines.append("| (no results in benchmarks/results/) | |")
    return "\n".join([*lines, HEND])


def _replace(text: str, start: str, end: str, new: str) -> str | None:
    if start in text and end in text:
        a, b = text.index(start), text.index(end) + len(end)
        return text[:a] + new + text[b:]
    return None


def render(text: str, records: dict[str, dict[str, Any]]) -> str:
    """The benchmarks page with its table and profiles rendered from `records`."""
    for case, ((start, end), _) in PROFILED.items():
        text = _replace(text, start, end, profile_block(records, case)) or text
    new = block(records)
    replaced = _replace(text, START, END, new)
    if replaced is not None:
        return replaced
    if SECTION in text:
        i = text.index(SECTION) + len(SECTION)
        nxt = text.find("\n## ", i)
        nxt = len(text) if nxt < 0 else nxt
        return text[:nxt].rstrip("\n") + "\n\n" + new + "\n" + text[nxt:]
    return text.rstrip("\n") + f"\n\n{SECTION}\n\n{new}\n"


def render_readme(text: str, records: dict[str, dict[str, Any]]) -> str:
    """README.md's text with its headline figures rendered from `records` (when it has the
    markers; otherwise unchanged)."""
    return _replace(text, HSTART, HEND, headline(records)) or text


def update(doc: str | None, results: str, readme: str | None = None) -> None:
    """Rewrite the tables in `doc` and the headline figures in `readme`, each when given."""
    records = load(results)
    if doc is not None:
        with open(doc) as fh:
            text = fh.read()
        with open(doc, "w") as fh:
            fh.write(render(text, records))
    if readme is not None:
        with open(readme) as fh:
            text = fh.read()
        with open(readme, "w") as fh:
            fh.write(render_readme(text, records))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--results", default=os.path.join(HERE, "results"))
    p.add_argument("--doc", default=DOC, help="the benchmarks page (default: docs/benchmarks.md)")
    p.add_argument("--readme", default=README_MD, help="headline figures (default: README.md)")
    p.add_argument("--print", action="store_true", help="print the table, change nothing")
    args = p.parse_args(argv)
    if args.print:
        print(table(load(args.results)))
    else:
        update(args.doc, args.results, args.readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
