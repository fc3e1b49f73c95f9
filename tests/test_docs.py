"""The documentation holds together: every relative link and `#anchor` in README.md and
docs/ resolves (GitHub's heading slugs), every reference to a doc page or section in the
configs, the Dockerfile and the code resolves, the README stays short and its component
table equal to the registry, and the benchmark figures in docs/benchmarks.md and the
README are what `benchmarks.report` renders from the committed results."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import pytest

from benchmarks import report
from pipeline.component import KINDS
from pipeline.registry import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_MAX_BYTES = 15_000

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
_MD_LINK_TEXT = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_HTML_TAG = re.compile(r"<[^>]+>")
_NOT_SLUG = re.compile(r"[^\w\- ]")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def markdown_files(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def _prose_lines(text: str) -> Iterable[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    fenced = False
    for n, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield n, line


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text lower-cased, punctuation other than '-' and
    '_' removed, spaces turned into '-'."""
    text = _MD_LINK_TEXT.sub(r"\1", heading)
    text = _CODE_SPAN.sub(lambda m: m.group(2), text)
    text = _HTML_TAG.sub("", text)
    return _NOT_SLUG.sub("", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor GitHub makes for a Markdown file (repeats get -1, -2, ...)."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for _, line in _prose_lines(path.read_text(encoding="utf-8")):
        out.update(_HTML_ANCHOR.findall(line))
        m = _HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(path: Path) -> list[tuple[int, str]]:
    """(line, target) of every link and image in a Markdown file, code left out."""
    out: list[tuple[int, str]] = []
    for n, line in _prose_lines(path.read_text(encoding="utf-8")):
        bare = _CODE_SPAN.sub("code", line)
        out += [(n, t) for t in _INLINE_LINK.findall(bare)]
        m = _REF_DEF.match(bare)
        if m:
            out.append((n, m.group(1)))
    return out


def resolve(target: str, base: Path, root: Path, cache: dict[Path, set[str]]) -> str | None:
    """What is wrong with `path[#anchor]`, relative to the directory `base`, or None."""
    path, _, anchor = target.partition("#")
    dest = (base / path).resolve()
    if not dest.is_relative_to(root):
        return "points outside the repository"
    if not dest.exists():
        return "no such file"
    if not anchor:
        return None
    if dest.suffix == ".md":
        if dest not in cache:
            cache[dest] = anchors(dest)
        if anchor not in cache[dest]:
            return f"no heading for #{anchor} in {dest.relative_to(root)}"
        return None
    if re.fullmatch(r"L\d+(-L\d+)?", anchor):  # a line of a source file
        return None
    return f"#{anchor} on a file that is not Markdown"


def broken_links(files: Iterable[Path], root: Path = ROOT) -> list[str]:
    """Every relative link or anchor in `files` that does not resolve, as 'file:line: ...'."""
    problems: list[str] = []
    cache: dict[Path, set[str]] = {}
    for f in files:
        for n, target in links(f):
            if not target or _SCHEME.match(target) or target.startswith("//"):
                continue
            if target.startswith("#"):
                target = f.name + target  # an anchor in the same file
            why = resolve(target, f.parent, root.resolve(), cache)
            if why:
                problems.append(f"{f.relative_to(root)}:{n}: {target}: {why}")
    return problems


# -- references from the code and configs --------------------------------------------------

_DOC_REF = re.compile(r"(?<![\w./-])((?:docs/[\w./-]+?\.md|README\.md)(?:#[\w-]+)?)")
_BARE_README = re.compile(r"(?<![\w.])README(?!\.md|\w)")
CODE_GLOBS = (
    "configs/**/*.yaml",
    "Dockerfile",
    "pipeline/**/*.py",
    "pipeline/**/*.pyi",
    "pipeline/**/*.c",
    "processors/**/*.py",
    "benchmarks/**/*.py",
)


def code_files(root: Path = ROOT) -> list[Path]:
    return sorted({p for g in CODE_GLOBS for p in root.glob(g) if p.is_file()})


def broken_code_references(files: Iterable[Path], root: Path = ROOT) -> list[str]:
    """References to docs from code and configs: each must be a path (and anchor) that
    resolves; a bare 'README' (a section named in words) cannot be checked, so it is one."""
    problems: list[str] = []
    cache: dict[Path, set[str]] = {}
    for f in files:
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            where = f"{f.relative_to(root)}:{n}"
            if _BARE_README.search(line):
                problems.append(
                    f"{where}: names the README without a checkable reference "
                    "(write README.md#anchor or docs/<page>.md#anchor)"
                )
            for ref in _DOC_REF.findall(line):
                why = resolve(ref, root.resolve(), root.resolve(), cache)
                if why:
                    problems.append(f"{where}: {ref}: {why}")
    return problems


def test_every_link_and_anchor_in_the_docs_resolves():
    files = markdown_files()
    assert len(files) > 10
    assert broken_links(files) == []


def test_every_doc_reference_in_the_code_and_configs_resolves():
    files = code_files()
    assert ROOT / "Dockerfile" in files and ROOT / "configs/gateway.yaml" in files
    assert broken_code_references(files) == []
    # the configs of the two tiers point at the section that explains them
    for name in ("sidecar.yaml", "gateway.yaml"):
        text = (ROOT / "configs" / name).read_text()
        assert "docs/deploy.md#the-two-tier-topology" in text


def test_the_checkers_find_broken_links_anchors_and_references(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text(
        "# Page\n\n## The `kafka` exporter\n\n## Twice\n\n## Twice\n\n"
        "[ok](#the-kafka-exporter) [ok](#twice-1) [bad](#nowhere)\n"
        "[ok](../README.md#top) [bad](missing.md) [bad](../README.md#nope)\n"
        "```\n[not a link](nowhere.md)\n```\n"
        "`[not a link](nowhere.md)` [web](https://example.com/x#y)\n"
    )
    (tmp_path / "README.md").write_text("# Top\n\n[ok](docs/page.md#twice) [bad](docs/x.md)\n")
    problems = broken_links(markdown_files(tmp_path), tmp_path)
    assert len(problems) == 4, problems
    assert any("#nowhere" in p for p in problems)
    assert any("missing.md: no such file" in p for p in problems)
    assert any("#nope" in p for p in problems)
    assert any(p.startswith("README.md:3: docs/x.md") for p in problems)

    code = tmp_path / "gateway.yaml"
    code.write_text(
        "# see docs/page.md#twice and README.md#top\n"
        "# (docs/page.md#gone)\n"
        '# (README, "The two-tier topology")\n'
    )
    problems = broken_code_references([code], tmp_path)
    assert [p.split(":")[1] for p in problems] == ["2", "3"], problems


def test_slugs_follow_githubs_rules():
    assert slug("`otlp` receiver") == "otlp-receiver"
    assert slug("`retry_on_failure`") == "retry_on_failure"
    assert slug("Sidecar, Docker, Kubernetes, chaining") == "sidecar-docker-kubernetes-chaining"
    assert slug("Delivery: at least once") == "delivery-at-least-once"
    assert slug("Security: exposure, TLS, mTLS, tokens, SASL") == (
        "security-exposure-tls-mtls-tokens-sasl"
    )
    assert slug("[Link](x.md) text") == "link-text"


# -- the README -----------------------------------------------------------------------------


def test_readme_is_short():
    size = README.stat().st_size
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; move detail into docs/"


def _generated(text: str) -> str:
    """The text without the blocks `benchmarks.report` writes."""
    a, b = text.index(report.HSTART), text.index(report.HEND) + len(report.HEND)
    return text[:a] + text[b:]


def test_readme_has_no_dated_lab_notes():
    prose = "\n".join(line for _, line in _prose_lines(_generated(README.read_text())))
    dates = re.findall(r"\b20\d\d-\d\d-\d\d\b", prose)
    assert dates == [], "dated notes belong in docs/internals/performance-notes.md"


def readme_components() -> dict[tuple[str, str], tuple[tuple[str, ...], str]]:
    """(type, kind) -> (aliases, link) from the README's component table."""
    text = README.read_text()
    section = text[text.index("\n## Components\n") :]
    section = section[: section.index("\n## ", 1)]
    rows: dict[tuple[str, str], tuple[tuple[str, ...], str]] = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == 5, line  # type, kind, what, Collector config, page
        names = re.findall(r"`([^`]+)`", cells[0])
        (link,) = re.findall(r"\]\(([^)]+)\)", cells[4])
        key = (names[0], cells[1])
        assert key not in rows, f"{key} twice"
        rows[key] = (tuple(names[1:]), link)
    return rows


def test_readme_component_table_is_the_registry():
    rows = readme_components()
    registry = {(t, kind) for kind in KINDS for t in REGISTRY.types(kind)}
    assert set(rows) == registry
    for (type_, kind), (aliases, link) in rows.items():
        factory = REGISTRY.table(kind)[type_]
        assert aliases == factory.aliases, type_
        assert link.partition("#")[0] == f"docs/components/{type_}.md"


def test_one_component_page_per_registered_type():
    pages = {p.stem for p in (ROOT / "docs" / "components").glob("*.md")}
    types = {t for kind in KINDS for t in REGISTRY.types(kind)}
    assert pages == types
    for t in types:
        title = (ROOT / "docs" / "components" / f"{t}.md").read_text().splitlines()[0]
        assert title.startswith("# ") and f"`{t}`" in title


# -- benchmark figures ----------------------------------------------------------------------


def test_benchmark_tables_and_headline_are_what_the_results_say():
    """`make bench` rewrites them; a hand edit, or results committed without the tables,
    would leave them stale."""
    records = report.load(str(ROOT / "benchmarks" / "results"))
    assert {"agent_pipeline", "passthrough", "latency"} <= set(records)
    doc = (ROOT / "docs" / "benchmarks.md").read_text()
    assert report.render(doc, records) == doc, "run `python -m benchmarks.report`"
    readme = README.read_text()
    assert report.HSTART in readme and report.HEND in readme
    assert report.render_readme(readme, records) == readme, "run `python -m benchmarks.report`"
    headline = readme[readme.index(report.HSTART) : readme.index(report.HEND)]
    assert f"**{records['agent_pipeline']['spans_per_s']:,} spans/s**" in headline
    assert f"**{records['passthrough']['spans_per_s']:,} spans/s**" in headline
    assert f"**{records['latency']['added_p99_ms']:.2f} ms**" in headline
    assert "](docs/benchmarks.md#results)" in headline


@pytest.mark.parametrize("page", ["configuration", "deploy", "operations", "genai", "benchmarks"])
def test_the_pages_the_readme_promises_exist_and_are_linked(page):
    assert (ROOT / "docs" / f"{page}.md").is_file()
    assert f"](docs/{page}.md)" in README.read_text()
