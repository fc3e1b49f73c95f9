"""The HTML report in a real browser (Debian's chromium): one self-contained file that
fetches nothing, draws its charts (class shares, reasons, each task class's durations
against its median and the slow line, requested -> served) with no console error; a
screenshot is kept in test-artifacts/."""

from __future__ import annotations

from typing import Any

import pytest

from processors.cleanliness import REASONS
from tests.audit.helpers import (
    audit,
    config_with_schemas,
    generated,
    report,
    requests_of,
    write_with_exporter,
)
from tests.browser import page_screenshot


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("html")
    traces = generated(200, seed=41)
    dump = write_with_exporter(tmp / "spans.jsonl", requests_of(traces), "json")
    html, js = tmp / "report.html", tmp / "report.json"
    res = audit(
        str(dump),
        *config_with_schemas(tmp),
        "--report-html",
        str(html),
        "--report-json",
        str(js),
        "--quiet",
    )
    assert res.returncode == 0, res.stderr
    return html, report(js)


def test_the_html_report_draws_its_charts(audited, browser_page) -> None:
    html, rep = audited
    text = html.read_text()
    # self-contained: nothing to fetch
    for needle in ("<link", "src=", "http://", "https://", "@import"):
        assert needle not in text.replace("http://www.w3.org/2000/svg", ""), needle
    requests: list[str] = []
    browser_page.on("request", lambda r: requests.append(r.url))
    browser_page.goto(html.as_uri())
    assert requests == [html.as_uri()]  # the page itself, and nothing else
    page = browser_page
    # class shares: one bar per class, widths in proportion to the counts
    shares = page.locator("#chart-classes rect.share")
    assert shares.count() == 4
    widths = {
        shares.nth(i).get_attribute("data-class"): float(shares.nth(i).get_attribute("width"))
        for i in range(4)
    }
    counts = {c["class"]: c["traces"] for c in rep["classes"]}
    assert max(widths, key=lambda k: widths[k]) == max(counts, key=lambda k: counts[k])
    assert sum(widths.values()) == pytest.approx(900, abs=0.1)
    # reasons: a bar per reason of the vocabulary, non-empty where traces have it
    bars = page.locator("#chart-reasons rect.reason-bar")
    assert bars.count() == len(rep["reasons"]) == len(REASONS)
    for r in rep["reasons"]:
        w = float(
            page.locator(f'#chart-reasons rect[data-reason="{r["reason"]}"]').get_attribute("width")
        )
        assert (w > 0) == (r["traces"] > 0), r
    # durations: a chart per task class, with its bins, median line and slow line
    charts = page.locator("svg.task-chart")
    assert charts.count() == len(rep["task_classes"]) > 0
    for i, tc in enumerate(rep["task_classes"]):
        chart = charts.nth(i)
        assert chart.get_attribute("data-task") == tc["task_class"]
        assert chart.locator("rect.bin").count() == len(tc["histogram"])
        assert chart.locator("line.median").count() == 1
        assert chart.locator("line.slow-line").count() == 1
        x_median = float(chart.locator("line.median").get_attribute("x1"))
        x_slow = float(chart.locator("line.slow-line").get_attribute("x1"))
        assert x_slow > x_median

    # requested -> served: a cell per pair, those served by another provider or model outlined
    def pair(r: dict[str, Any]) -> tuple[str, str]:
        return (
            f"{r['requested_provider'] or '?'}/{r['requested_model'] or '?'}",
            f"{r['served_provider'] or '?'}/{r['served_model'] or '?'}",
        )

    rows = rep["requested_served"]
    assert len({pair(r)[0] for r in rows}) <= 12 and len({pair(r)[1] for r in rows}) <= 12
    assert page.locator("#chart-matrix rect.cell").count() == len({pair(r) for r in rows})
    mismatched = {pair(r) for r in rows if r["mismatch"]}
    assert len(mismatched) > 0
    assert page.locator("#chart-matrix rect.mismatch").count() == len(mismatched)
    # what is drawn is visible
    assert page.locator("#chart-classes").is_visible()
    box = page.locator("#chart-matrix").bounding_box()
    assert box is not None and box["width"] > 100 and box["height"] > 100
    # the report's data rides along
    assert page.locator("script#report-data").count() == 1
    page_screenshot(page, "audit-report")
