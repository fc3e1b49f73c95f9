"""The audit report as one self-contained HTML file (`--report-html`): styles inline, the
charts inline SVG drawn here, the report's JSON embedded (`<script type="application/json"
id="report-data">`); nothing is fetched.

Charts: class shares (one stacked bar), reasons (a bar per reason), each task class's
duration distribution (log-scale histogram) against the median of its clean traces and the
slow line (`max_ratio` x that median), and requested -> served (a matrix of provider/model
pairs, mismatches outlined). Tables below them carry the rest of the terminal report.
"""

from __future__ import annotations

import json
import math
from html import escape
from typing import Any

from pipeline.audit.report import pct, secs

__all__ = ["render_html"]

COLOURS = {"clean": "#2e7d32", "noisy": "#f9a825", "corrupted": "#8e24aa", "failed": "#c62828"}
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:20px} header p{margin:4px 0 0;color:#c9cfdb}
main{padding:8px 28px 40px;max-width:1280px}
section{background:#fff;border:1px solid #e1e4ea;border-radius:8px;margin:16px 0;padding:14px 18px}
h2{font-size:16px;margin:0 0 10px}
table{border-collapse:collapse;margin:6px 0;font-size:13px}
th,td{border-bottom:1px solid #eceef2;padding:4px 10px;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.legend span{display:inline-block;margin-right:16px}
.swatch{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:5px;vertical-align:-1px}
.tasks{display:flex;flex-wrap:wrap;gap:14px}
.task{border:1px solid #eceef2;border-radius:6px;padding:8px}
.task h3{font-size:13px;margin:0 0 4px}
.muted{color:#6b7385;font-size:12px}
.mismatch{color:#c62828;font-weight:600}
svg text{font:11px system-ui,sans-serif;fill:#333}
"""


def _num(n: int) -> str:
    return f"{n:,}"


def _table(head: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    out = ["<table><tr>"]
    out += [f"<th{' class=n' if i in numeric else ''}>{escape(h)}</th>" for i, h in enumerate(head)]
    out.append("</tr>")
    for r in rows:
        out.append("<tr>")
        out += [f"<td{' class=n' if i in numeric else ''}>{c}</td>" for i, c in enumerate(r)]
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


# -- charts -------------------------------------------------------------------------------------


def class_chart(report: dict[str, Any], width: int = 900) -> str:
    total = sum(c["traces"] for c in report["classes"]) or 1
    x = 0.0
    rects = []
    for c in report["classes"]:
        w = width * c["traces"] / total
        label = f"{c['class']}: {_num(c['traces'])} ({pct(c['share'])})"
        rects.append(
            f'<rect class="share" data-class="{c["class"]}" x="{x:.2f}" y="0" width="{w:.2f}" '
            f'height="34" fill="{COLOURS[c["class"]]}"><title>{escape(label)}</title></rect>'
        )
        if w > 70:
            rects.append(
                f'<text x="{x + 6:.2f}" y="22" style="fill:#fff;font-weight:600">'
                f"{escape(c['class'])} {pct(c['share'])}</text>"
            )
        x += w
    legend = "".join(
        f'<span><i class="swatch" style="background:{COLOURS[c["class"]]}"></i>'
        f"{escape(c['class'])} {_num(c['traces'])} ({pct(c['share'])})</span>"
        for c in report["classes"]
    )
    return (
        f'<svg id="chart-classes" width="{width}" height="34" viewBox="0 0 {width} 34" '
        f'role="img" aria-label="class shares">{"".join(rects)}</svg>'
        f'<div class="legend">{legend}</div>'
    )


def reasons_chart(report: dict[str, Any], width: int = 900) -> str:
    reasons = report["reasons"]
    top = max((r["traces"] for r in reasons), default=0) or 1
    bar_h, gap, label_w = 20, 6, 170
    h = len(reasons) * (bar_h + gap)
    parts = []
    for i, r in enumerate(reasons):
        y = i * (bar_h + gap)
        w = (width - label_w - 120) * r["traces"] / top
        colour = COLOURS.get(r["class"], "#607d8b")
        parts.append(f'<text x="0" y="{y + 14}">{escape(r["reason"])}</text>')
        parts.append(
            f'<rect class="reason-bar" data-reason="{r["reason"]}" x="{label_w}" y="{y}" '
            f'width="{w:.2f}" height="{bar_h}" fill="{colour}"><title>{escape(r["reason"])}: '
            f"{_num(r['traces'])} traces</title></rect>"
        )
        parts.append(
            f'<text x="{label_w + w + 6:.2f}" y="{y + 14}">{_num(r["traces"])} ({pct(r["share"])})</text>'
        )
    return (
        f'<svg id="chart-reasons" width="{width}" height="{h}" viewBox="0 0 {width} {h}" '
        f'role="img" aria-label="reasons">{"".join(parts)}</svg>'
    )


def task_chart(tc: dict[str, Any], max_ratio: float, width: int = 400, height: int = 150) -> str:
    """One task class: its duration histogram (log scale), the clean median and the slow
    line."""
    hist = tc["histogram"]
    cm = tc["clean_median"]
    pad_l, pad_b, pad_t = 34, 24, 8
    lows = [b[0] for b in hist if b[0] > 0]
    highs = [b[1] if b[1] is not None else b[0] * 1.1 for b in hist]
    marks = [x for x in (cm["seconds"], (cm["seconds"] or 0) * max_ratio) if x]
    lo = min([*lows, *marks]) / 1.25 if lows or marks else 1e-3
    hi = max([*highs, *marks, lo * 4]) * 1.25
    lo, hi = math.log10(max(lo, 1e-3)), math.log10(hi)
    span = (hi - lo) or 1.0
    plot_w = width - pad_l - 8
    plot_h = height - pad_b - pad_t
    top = max((b[2] for b in hist), default=1) or 1

    def xpos(seconds: float) -> float:
        return pad_l + plot_w * (math.log10(max(seconds, 1e-3)) - lo) / span

    parts = [
        f'<line x1="{pad_l}" y1="{pad_t + plot_h}" x2="{width - 8}" y2="{pad_t + plot_h}" stroke="#999"/>'
    ]
    for b0, b1, count in hist:
        x0 = xpos(b0 if b0 > 0 else 1e-3)
        x1 = xpos(b1) if b1 is not None else x0 + 4
        h = plot_h * count / top
        parts.append(
            f'<rect class="bin" x="{x0:.2f}" y="{pad_t + plot_h - h:.2f}" width="{max(x1 - x0 - 0.5, 1):.2f}" '
            f'height="{h:.2f}" fill="#5c7cfa"><title>{secs(b0)}-{secs(b1)}: {_num(count)}</title></rect>'
        )
    if cm["seconds"]:
        x = xpos(cm["seconds"])
        parts.append(
            f'<line class="median" x1="{x:.2f}" y1="{pad_t}" x2="{x:.2f}" y2="{pad_t + plot_h}" '
            f'stroke="#2e7d32" stroke-width="2"><title>median of clean traces: {secs(cm["seconds"])}</title></line>'
        )
        s = cm["seconds"] * max_ratio
        xs = xpos(s)
        parts.append(
            f'<line class="slow-line" x1="{xs:.2f}" y1="{pad_t}" x2="{xs:.2f}" y2="{pad_t + plot_h}" '
            f'stroke="#c62828" stroke-width="2" stroke-dasharray="4 3"><title>{max_ratio}x median: '
            f"{secs(s)}</title></line>"
        )
    for v in _ticks(lo, hi):
        x = xpos(v)
        parts.append(f'<text x="{x - 12:.2f}" y="{height - 6}">{escape(secs(v))}</text>')
    return (
        f'<svg class="task-chart" data-task="{escape(tc["task_class"])}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img">{"".join(parts)}</svg>'
    )


def _ticks(lo: float, hi: float) -> list[float]:
    """Round values (1, 2, 5 times a power of ten) between 10**lo and 10**hi, at most 6."""
    out = []
    for k in range(math.floor(lo), math.ceil(hi) + 1):
        for m in (1, 2, 5):
            v = m * 10.0**k
            if lo <= math.log10(v) <= hi:
                out.append(v)
    while len(out) > 6:
        out = out[::2]
    return out


def matrix_chart(report: dict[str, Any], limit: int = 12) -> str:
    rows = report["requested_served"]
    if not rows:
        return '<p class="muted">No LLM calls.</p>'
    req_tot: dict[str, int] = {}
    srv_tot: dict[str, int] = {}
    cells: dict[tuple[str, str], tuple[int, bool]] = {}
    for r in rows:
        a = f"{r['requested_provider'] or '?'}/{r['requested_model'] or '?'}"
        b = f"{r['served_provider'] or '?'}/{r['served_model'] or '?'}"
        req_tot[a] = req_tot.get(a, 0) + r["calls"]
        srv_tot[b] = srv_tot.get(b, 0) + r["calls"]
        n, mm = cells.get((a, b), (0, False))
        cells[(a, b)] = (n + r["calls"], mm or r["mismatch"])
    reqs = sorted(req_tot, key=lambda k: -req_tot[k])[:limit]
    srvs = sorted(srv_tot, key=lambda k: -srv_tot[k])[:limit]
    cw, ch, left, top_h = 64, 26, 230, 150
    width = left + cw * len(srvs) + 10
    height = top_h + ch * len(reqs) + 10
    peak = max((n for (a, b), (n, _) in cells.items() if a in reqs and b in srvs), default=1) or 1
    parts = []
    for j, b in enumerate(srvs):
        x = left + j * cw + cw / 2
        parts.append(
            f'<text transform="translate({x:.1f},{top_h - 6}) rotate(-50)">{escape(b)}</text>'
        )
    for i, a in enumerate(reqs):
        y = top_h + i * ch
        parts.append(f'<text x="4" y="{y + 17}">{escape(a)}</text>')
        for j, b in enumerate(srvs):
            got = cells.get((a, b))
            if got is None:
                continue
            n, mm = got
            x = left + j * cw
            shade = 0.15 + 0.85 * n / peak
            cls = "cell mismatch" if mm else "cell"
            stroke = ' stroke="#c62828" stroke-width="3"' if mm else ""
            parts.append(
                f'<rect class="{cls}" x="{x + 1}" y="{y + 1}" width="{cw - 2}" height="{ch - 2}" '
                f'fill="rgba(92,124,250,{shade:.2f})"{stroke}><title>{escape(a)} -> {escape(b)}: '
                f"{_num(n)} calls{' (mismatch)' if mm else ''}</title></rect>"
            )
            parts.append(f'<text x="{x + 6}" y="{y + 17}">{_num(n)}</text>')
    note = ""
    if len(req_tot) > limit or len(srv_tot) > limit:
        note = f'<p class="muted">The {limit} most frequent pairs each way; all of them are in the table below.</p>'
    return (
        f'<svg id="chart-matrix" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="requested to served">{"".join(parts)}</svg>{note}'
        '<p class="muted">Rows: requested provider/model; columns: served. '
        "Outlined in red: served by another provider or model than requested.</p>"
    )


# -- the page -----------------------------------------------------------------------------------


def render_html(report: dict[str, Any]) -> str:
    tot = report["totals"]
    tr = tot["time_range"]
    max_ratio = report["config"]["timing"]["max_ratio"]
    fp = report["four_point_filter"]
    sections: list[str] = []
    sections.append(
        "<section><h2>Classes</h2>"
        + class_chart(report)
        + f"<p>Four-point filter (single provider and model with no fallback, no tool retry, "
        f"tool results valid, duration within {max_ratio}x the task-class median): "
        f"<b>{_num(fp['traces'])}</b> traces ({pct(fp['share'])}).</p>"
        + _table(
            ["failing on", "traces"],
            [[escape(k.replace("_", " ")), _num(v)] for k, v in fp["failing"].items()],
            {1},
        )
        + "</section>"
    )
    sections.append("<section><h2>Reasons</h2>" + reasons_chart(report) + "</section>")
    tasks = []
    for tc in report["task_classes"][:24]:
        cm = tc["clean_median"]
        basis = (
            f"median of {_num(cm['clean_traces'])} clean traces: {secs(cm['seconds'])}"
            + ("" if cm["used"] else " (too few: not used)")
            if cm["seconds"] is not None
            else "no clean trace"
        )
        tasks.append(
            f'<div class="task"><h3>{escape(tc["task_class"])}</h3>'
            + task_chart(tc, max_ratio)
            + f'<div class="muted">{_num(tc["traces"])} traces, {_num(tc["slow"])} slow; '
            f'{escape(basis)}; <span style="color:#2e7d32">median</span>, '
            f'<span style="color:#c62828">{max_ratio}x</span></div></div>'
        )
    sections.append(
        "<section><h2>Durations by task class</h2>"
        + (
            f'<div class="tasks">{"".join(tasks)}</div>'
            if tasks
            else '<p class="muted">No task class.</p>'
        )
        + _table(
            ["task class", "traces", "median", "p95", "clean median", "clean traces", "slow"],
            [
                [
                    escape(tc["task_class"]),
                    _num(tc["traces"]),
                    secs(tc["median_seconds"]),
                    secs(tc["p95_seconds"]),
                    secs(tc["clean_median"]["seconds"]),
                    _num(tc["clean_median"]["clean_traces"]),
                    _num(tc["slow"]),
                ]
                for tc in report["task_classes"]
            ],
            {1, 2, 3, 4, 5, 6},
        )
        + "</section>"
    )
    sections.append(
        "<section><h2>Requested &rarr; served</h2>"
        + matrix_chart(report)
        + _table(
            ["requested", "served", "calls", ""],
            [
                [
                    escape(f"{r['requested_provider'] or '?'}/{r['requested_model'] or '?'}"),
                    escape(f"{r['served_provider'] or '?'}/{r['served_model'] or '?'}"),
                    _num(r["calls"]),
                    '<span class="mismatch">mismatch</span>' if r["mismatch"] else "",
                ]
                for r in report["requested_served"][:50]
            ],
            {2},
        )
        + "</section>"
    )
    sections.append(
        "<section><h2>Fallback chains</h2>"
        + _table(
            ["chain", "calls"],
            [
                [escape(" → ".join(c["chain"])), _num(c["calls"])]
                for c in report["fallback_chains"][:20]
            ],
            {1},
        )
        + "<h2>Cache hits</h2>"
        + _table(
            ["type", "evidence", "calls"],
            [
                [escape(c["type"]), escape(c["evidence"]), _num(c["calls"])]
                for c in report["cache_hits"]
            ],
            {2},
        )
        + "<h2>Tool retries</h2>"
        + _table(
            ["tool", "traces", "retries"],
            [
                [escape(r["tool"]), _num(r["traces"]), _num(r["retries"])]
                for r in report["tool_retries"]
            ],
            {1, 2},
        )
        + "<h2>Schema-invalid tool results</h2>"
        + _table(
            ["tool", "results", "first validation error"],
            [
                [escape(r["tool"]), _num(r["results"]), escape(r["first_error"])]
                for r in report["tool_schema_invalid"]
            ],
            {1},
        )
        + "</section>"
    )
    p = report["problems"]
    sections.append(
        "<section><h2>Problems in the input</h2>"
        + _table(
            ["", "count"],
            [
                ["bad lines", _num(p["bad_lines"])],
                ["bad or truncated frames", _num(p["bad_frames"])],
                ["unreadable or garbage files", _num(p["bad_files"])],
                ["spans without usable ids (rejected)", _num(p["spans_without_ids"])],
                ["traces without a root span", _num(p["traces_without_root"])],
            ],
            {1},
        )
        + _table(
            ["where", "problem"],
            [[escape(e["where"]), escape(e["problem"])] for e in p["examples"]],
        )
        + "</section>"
    )
    summary = (
        f"{_num(tot['traces'])} traces, {_num(tot['spans_audited'])} spans audited "
        f"({_num(tot['spans_read'])} read, {_num(tot['spans_rejected'])} rejected)"
        + (f"; {escape(tr['start'])} .. {escape(tr['end'])}" if tr else "")
    )
    data = json.dumps(report).replace("</", "<\\/")
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        "<title>tracesieve audit</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<header><h1>tracesieve audit</h1><p>{summary}</p>"
        f"<p>{escape(', '.join(i['name'] for i in report['inputs'][:6]))}</p></header>"
        f"<main>{''.join(sections)}</main>"
        f'<script type="application/json" id="report-data">{data}</script>'
        "</body></html>\n"
    )
