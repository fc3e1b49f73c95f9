"""The audit report: built once as a plain dict (`build`: what `--report-json` writes,
described by `schema.json`), then shown on the terminal (`render`) and drawn in HTML
(`pipeline.audit.html`).

On the terminal it is formatted with `rich` when stdout is a terminal, and plain text
(the same tables in ASCII, no colour) otherwise.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from importlib import resources
from typing import IO, Any

from pipeline.audit.records import HIST_EDGES, Tally
from processors.cleanliness import CLASSES, DEFAULT_CLASSES, REASONS, CleanlinessConfig

__all__ = ["SCHEMA_VERSION", "build", "render", "schema"]

SCHEMA_VERSION = 1
FOUR_POINTS = ("provider_or_model", "tool_retry", "tool_schema_invalid", "duration", "no_median")


def schema() -> dict[str, Any]:
    """The JSON Schema of the report (`pipeline/audit/schema.json`)."""
    text = resources.files("pipeline.audit").joinpath("schema.json").read_text()
    out: dict[str, Any] = json.loads(text)
    return out


def _share(n: int, total: int) -> float:
    return round(n / total, 4) if total else 0.0


def _iso(ns: int) -> str | None:
    if not ns:
        return None
    t = dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build(
    tally: Tally,
    *,
    inputs: list[dict[str, Any]],
    read: dict[str, int],
    problems: dict[str, Any],
    medians: dict[str, tuple[float, int]],
    cleanliness: CleanlinessConfig,
    config_source: str,
    run: dict[str, Any],
    conventions: set[str],
) -> dict[str, Any]:
    """The report. `medians`: per task class, (median of its clean traces' durations,
    how many clean traces it rests on), before `min_samples` is applied."""
    t = tally
    total = t.traces
    classes_of = {**DEFAULT_CLASSES, **cleanliness.reason_classes}
    timing = cleanliness.timing
    tasks = []
    for name in sorted(t.tasks, key=lambda k: (-t.tasks[k].traces, k)):
        tt = t.tasks[name]
        m, n = medians.get(name, (None, 0))
        used = m is not None and n >= timing.min_samples
        hist = [
            [
                round(HIST_EDGES[b - 1] if b else 0.0, 6),
                round(HIST_EDGES[b], 6) if b < len(HIST_EDGES) else None,
                c,
            ]
            for b, c in sorted(tt.hist.items())
        ]
        tasks.append(
            {
                "task_class": name,
                "traces": tt.traces,
                "median_seconds": _round(tt.sketch.get_quantile_value(0.5)),
                "p95_seconds": _round(tt.sketch.get_quantile_value(0.95)),
                "slow": tt.slow,
                "without_median": tt.no_median,
                "clean_median": {
                    "seconds": _round(m) if m is not None else None,
                    "clean_traces": n,
                    "used": used,
                    "slow_above_seconds": _round(m * timing.max_ratio) if used and m else None,
                },
                "histogram": hist,
            }
        )
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "generated_at": dt.datetime.now(dt.UTC)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z"),
        "config": {
            "source": config_source,
            "timing": {
                "max_ratio": timing.max_ratio,
                "min_samples": timing.min_samples,
                "class_key": timing.class_key,
            },
            "tool_schemas": cleanliness.tool_schemas,
            "strict_single_model": cleanliness.strict_single_model,
            "reason_classes": classes_of,
        },
        "inputs": inputs,
        "run": run,
        "totals": {
            "traces": total,
            "spans_read": read["spans"],
            "spans_audited": t.spans,
            "spans_rejected": read["rejected"],
            "messages_read": read["messages"],
            "messages_rejected": read["bad_messages"],
            "time_range": {"start": _iso(t.start), "end": _iso(t.end)} if t.start else None,
            "services": [{"name": k, "traces": v} for k, v in t.services.most_common()],
            "conventions": sorted(conventions),
        },
        "classes": [
            {"class": c, "traces": t.classes.get(c, 0), "share": _share(t.classes.get(c, 0), total)}
            for c in CLASSES
        ],
        "four_point_filter": {
            "traces": t.four_point,
            "share": _share(t.four_point, total),
            "failing": {k: t.four_point_fails.get(k, 0) for k in FOUR_POINTS},
        },
        "reasons": [
            {
                "reason": r,
                "class": classes_of[r],
                "traces": t.reasons.get(r, 0),
                "share": _share(t.reasons.get(r, 0), total),
            }
            for r in REASONS
        ],
        "requested_served": [
            {
                "requested_provider": k[0],
                "requested_model": k[1],
                "served_provider": k[2],
                "served_model": k[3],
                "mismatch": k[4],
                "calls": n,
            }
            for k, n in sorted(t.calls.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        "fallback_chains": [
            {"chain": list(k), "calls": n}
            for k, n in sorted(t.chains.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        "cache_hits": [
            {"type": k[0], "evidence": k[1], "calls": n}
            for k, n in sorted(t.cache_hits.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        "tool_retries": [
            {"tool": k, "traces": v[0], "retries": v[1]}
            for k, v in sorted(t.tool_retries.items(), key=lambda kv: (-kv[1][0], kv[0]))
        ],
        "tool_schema_invalid": [
            {"tool": k, "results": v[0], "first_error": v[1]}
            for k, v in sorted(t.schema_invalid.items(), key=lambda kv: (-kv[1][0], kv[0]))
        ],
        "task_classes": tasks,
        "problems": {
            **problems,
            "traces_without_root": t.no_root,
            "traces_without_root_examples": t.no_root_examples,
        },
    }
    return report


def _round(x: float | None) -> float | None:
    if x is None:
        return None
    return round(float(x), 6)


# -- terminal ---------------------------------------------------------------------------------


def pct(share: float) -> str:
    """A share as a percentage, one decimal."""
    return f"{share * 100:.1f}%"


def secs(x: float | None) -> str:
    """A duration in seconds, readable: ms below 1 s, '-' for none."""
    if x is None:
        return "-"
    if x >= 100:
        return f"{x:,.0f} s"
    if x >= 1:
        return f"{x:.2f} s"
    return f"{x * 1000:.0f} ms"


def _pair(provider: str, model: str) -> str:
    return f"{provider or '?'}/{model or '?'}"


def render(
    report: dict[str, Any], out: IO[str], *, fancy: bool | None = None, width: int | None = None
) -> None:
    """The report as tables on `out`: formatted (`rich`) when `fancy` (default: `out` is a
    terminal), plain ASCII otherwise."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    if fancy is None:
        fancy = out.isatty()
    console = Console(
        file=out,
        force_terminal=fancy,
        no_color=not fancy,
        highlight=False,
        width=width or (None if fancy else 100),
        emoji=False,
    )
    style = box.ROUNDED if fancy else box.ASCII2
    bold = "bold" if fancy else ""

    def table(title: str, *cols: tuple[str, str]) -> Table:
        t = Table(
            title=title,
            title_justify="left",
            title_style=bold,
            box=style,
            header_style=bold,
        )
        for name, justify in cols:
            t.add_column(name, justify=justify)  # type: ignore[arg-type]
        return t

    tot = report["totals"]
    n = tot["traces"]
    # 1. totals
    t = table("Totals", ("", "left"), ("", "left"))
    t.show_header = False
    t.add_row("traces", f"{n:,}")
    t.add_row(
        "spans",
        f"{tot['spans_read']:,} read, {tot['spans_audited']:,} audited, {tot['spans_rejected']:,} rejected",
    )
    tr = tot["time_range"]
    t.add_row("time range", f"{tr['start']} .. {tr['end']}" if tr else "-")
    services = tot["services"]
    shown = ", ".join(f"{s['name']} ({s['traces']:,})" for s in services[:8])
    more = f", +{len(services) - 8} more" if len(services) > 8 else ""
    t.add_row("services", (shown + more) or "-")
    t.add_row(
        "conventions",
        ", ".join(tot["conventions"]) or "-",
    )
    inputs = report["inputs"]
    t.add_row(
        "inputs",
        "; ".join(f"{i['name']} ({i['format']})" for i in inputs[:4])
        + (f"; +{len(inputs) - 4} more" if len(inputs) > 4 else ""),
    )
    console.print(t)
    console.print()
    # 2. the audit table
    colours = {"clean": "green", "noisy": "yellow", "corrupted": "magenta", "failed": "red"}
    t = table("Audit", ("class", "left"), ("traces", "right"), ("share", "right"))
    for c in report["classes"]:
        name = Text(c["class"], style=colours[c["class"]] if fancy else "")
        t.add_row(name, f"{c['traces']:,}", pct(c["share"]))
    fp = report["four_point_filter"]
    t.add_section()
    t.add_row("four-point filter", f"{fp['traces']:,}", pct(fp["share"]))
    console.print(t)
    fails = fp["failing"]
    console.print(
        "  four-point filter: single provider and model with no fallback, no tool retry, tool "
        "results valid, duration within "
        f"{report['config']['timing']['max_ratio']}x the task-class median. Failing: "
        + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in fails.items())
    )
    console.print()
    # 3. reasons
    t = table(
        "Reasons", ("reason", "left"), ("class", "left"), ("traces", "right"), ("share", "right")
    )
    for r in report["reasons"]:
        if r["traces"]:
            t.add_row(r["reason"], r["class"], f"{r['traces']:,}", pct(r["share"]))
    if not t.rows:
        t.add_row("(none)", "", "", "")
    console.print(t)
    console.print()
    # 4. requested -> served
    t = table(
        "Requested -> served (LLM calls)",
        ("requested", "left"),
        ("served", "left"),
        ("calls", "right"),
        ("", "left"),
    )
    rows = report["requested_served"]
    for r in rows[:20]:
        mark = "mismatch" if r["mismatch"] else ""
        t.add_row(
            _pair(r["requested_provider"], r["requested_model"]),
            _pair(r["served_provider"], r["served_model"]),
            f"{r['calls']:,}",
            Text(mark, style="bold red" if fancy and mark else ""),
        )
    if len(rows) > 20:
        t.add_row(f"... {len(rows) - 20} more pairs", "", "", "")
    if not rows:
        t.add_row("(no LLM calls)", "", "", "")
    console.print(t)
    console.print()
    # 5. fallback chains
    t = table("Most common fallback chains", ("chain", "left"), ("calls", "right"))
    for c in report["fallback_chains"][:10]:
        t.add_row(" -> ".join(c["chain"]), f"{c['calls']:,}")
    if not report["fallback_chains"]:
        t.add_row("(no fallback fired)", "")
    console.print(t)
    console.print()
    # 6. cache hits, retries by tool, schema-invalid results
    t = table("Cache hits (LLM calls)", ("type", "left"), ("evidence", "left"), ("calls", "right"))
    for c in report["cache_hits"]:
        t.add_row(c["type"], c["evidence"], f"{c['calls']:,}")
    if not report["cache_hits"]:
        t.add_row("(none)", "", "")
    console.print(t)
    console.print()
    t = table("Tool retries", ("tool", "left"), ("traces", "right"), ("retries", "right"))
    for r in report["tool_retries"]:
        t.add_row(r["tool"], f"{r['traces']:,}", f"{r['retries']:,}")
    if not report["tool_retries"]:
        t.add_row("(none)", "", "")
    console.print(t)
    console.print()
    t = table(
        "Schema-invalid tool results",
        ("tool", "left"),
        ("results", "right"),
        ("first validation error", "left"),
    )
    for r in report["tool_schema_invalid"]:
        t.add_row(r["tool"], f"{r['results']:,}", r["first_error"])
    if not report["tool_schema_invalid"]:
        t.add_row(
            "(none)" if report["config"]["tool_schemas"] else "(no tool_schemas configured)", "", ""
        )
    console.print(t)
    console.print()
    # 7. task classes
    t = table(
        "Task classes",
        ("task class", "left"),
        ("traces", "right"),
        ("median", "right"),
        ("p95", "right"),
        ("clean median (traces)", "right"),
        ("slow", "right"),
    )
    for tc in report["task_classes"][:30]:
        cm = tc["clean_median"]
        basis = (
            f"{secs(cm['seconds'])} ({cm['clean_traces']:,})"
            if cm["seconds"] is not None
            else f"- ({cm['clean_traces']:,})"
        )
        if cm["seconds"] is not None and not cm["used"]:
            basis += " unused"
        t.add_row(
            tc["task_class"],
            f"{tc['traces']:,}",
            secs(tc["median_seconds"]),
            secs(tc["p95_seconds"]),
            basis,
            f"{tc['slow']:,}",
        )
    if len(report["task_classes"]) > 30:
        t.add_row(f"... {len(report['task_classes']) - 30} more", "", "", "", "", "")
    console.print(t)
    mr = report["config"]["timing"]
    console.print(
        f"  slow: root duration above {mr['max_ratio']}x the median of the task class's clean "
        f"traces (used from {mr['min_samples']} clean traces on; 'unused' below that)"
    )
    console.print()
    # 8. problems
    p = report["problems"]
    t = table("Problems in the input", ("", "left"), ("count", "right"))
    t.show_header = False
    for key, label in (
        ("bad_lines", "bad lines"),
        ("bad_frames", "bad or truncated frames"),
        ("bad_files", "unreadable or garbage files"),
        ("spans_without_ids", "spans without usable ids (rejected)"),
        ("traces_without_root", "traces without a root span"),
    ):
        t.add_row(label, f"{p[key]:,}")
    console.print(t)
    for ex in p["examples"][:10]:
        console.print(f"  {ex['where']}: {ex['problem']}", markup=False)
    if len(p["examples"]) > 10:
        console.print(f"  ... {len(p['examples']) - 10} more listed in --report-json")
    ds = report.get("dataset")
    if ds is not None:
        console.print()
        t = table("Dataset", ("", "left"), ("", "right"))
        t.show_header = False
        t.add_row("format", f"{ds['format']}, an example per {ds['per']}")
        ex = ds["examples"]
        t.add_row("examples written", f"{ex['train'] + ex['validation']:,}")
        if ex["validation"]:
            t.add_row("  of them for validation", f"{ex['validation']:,}")
        tr = ds["traces"]
        t.add_row(f"traces selected ({', '.join(ds['classes'])})", f"{tr['selected']:,}")
        for reason, k in ds["skipped"].items():
            t.add_row(f"skipped: {reason.replace('_', ' ')}", f"{k:,}")
        console.print(t)
        for f in ds["files"]:
            console.print(f"  {f}", markup=False)
    run = report["run"]
    console.print()
    console.print(
        f"audited in {run['seconds']:.1f} s with {run['workers']} worker(s): "
        f"{run['spans_per_second']:,.0f} spans/s",
        markup=False,
    )


def write_json(report: dict[str, Any], path: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        json.dump(report, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)
