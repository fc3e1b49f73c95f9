"""The native builds (setup.py): the C wire scanner and the mypyc-compiled modules are the
ones built from the sources here, not stale leftovers of an earlier checkout."""

from __future__ import annotations

import ast
import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import jsonwire, native, wirescan

ROOT = Path(__file__).resolve().parents[1]


def _compiled() -> list[str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "COMPILED":
            return [ast.literal_eval(e) for e in node.value.elts]  # type: ignore[attr-defined]
    raise AssertionError("setup.py has no COMPILED list")


SOURCES = [(p.removesuffix(".py").replace("/", "."), p) for p in _compiled()] + [
    ("pipeline._wirescan", "pipeline/_wirescan.c"),
    ("pipeline._jsonwire", "pipeline/_jsonwire.c"),
]


@pytest.mark.parametrize(("name", "path"), SOURCES)
def test_a_compiled_module_is_not_older_than_its_source(name, path):
    # (a native build that fails is skipped by setup.py, optional: an old .so would stay)
    if native.pure_python_requested():
        pytest.skip("TRACESIEVE_PURE_PYTHON=1: nothing native is imported in this pass")
    try:
        mod = importlib.import_module(name)
    except ImportError:
        pytest.skip(f"{name} is not built")
    if not str(mod.__file__).endswith(".so"):
        pytest.skip(f"{name} runs as Python (not compiled)")
    src = ROOT / path
    assert os.path.getmtime(str(mod.__file__)) >= os.path.getmtime(src), (
        f"{mod.__file__} is older than {path}: it runs the old code. "
        "Rebuild with `make` (any target) or `pip install -e .`"
    )


def test_the_makefile_rebuilds_when_a_compiled_source_changes():
    makefile = (ROOT / "Makefile").read_text()
    listed = makefile.split("NATIVE :=", 1)[1].split("\n\n", 1)[0].replace("\\\n", " ")
    assert listed.split() == _compiled()


def test_the_wire_scanner_is_native_where_a_compiler_was_found():
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler here: the pure-Python fallback runs")
    if native.pure_python_requested():
        pytest.skip("TRACESIEVE_PURE_PYTHON=1: the pure-Python pass")
    assert wirescan.NATIVE, "pipeline._wirescan was not built, though a C compiler is here"
    assert jsonwire.NATIVE, "pipeline._jsonwire was not built, though a C compiler is here"


def test_the_runtime_knows_what_setup_py_compiles():
    assert [p.removesuffix(".py").replace("/", ".") for p in _compiled()] == list(native.COMPILED)


_PROBE = """
import json, sys
import pipeline.registry, pipeline.native as n
st = n.status()
ours = sorted(
    name for name, m in sys.modules.items()
    if name.split(".")[0] in ("pipeline", "processors", "tracesieve_native__mypyc")
    and str(getattr(m, "__file__", "") or "").endswith(".so")
)
print(json.dumps(
    {"scanner": st.scanner, "json": st.json_parser, "compiled": st.compiled, "so": ours}
))
"""


def _probe(**env: str) -> dict:  # type: ignore[type-arg]
    res = subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=ROOT,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def test_pure_python_mode_loads_no_native_module():
    """TRACESIEVE_PURE_PYTHON=1 at run time: neither the C scanner nor any mypyc module
    (nor mypyc's shared library) is loaded, whatever the install built."""
    got = _probe(TRACESIEVE_PURE_PYTHON="1")
    assert got == {"scanner": False, "json": False, "compiled": [], "so": []}
    if _built():  # and without it, the same install runs its native code
        got = _probe(TRACESIEVE_PURE_PYTHON="0")
        assert got["scanner"] and got["json"] and got["compiled"] == list(native.COMPILED)
        for so in ("pipeline._wirescan", "pipeline._jsonwire", "tracesieve_native__mypyc"):
            assert so in got["so"]


def test_in_the_pure_python_pass_nothing_native_runs():
    if not native.pure_python_requested():
        pytest.skip("only in the pure-Python pass (make test-pure)")
    st = native.status()
    assert not st.scanner and not st.json_parser and not st.compiled
    assert not wirescan.NATIVE and not jsonwire.NATIVE
    assert not [
        m
        for m in sys.modules
        if m.endswith("__mypyc") or m in ("pipeline._wirescan", "pipeline._jsonwire")
    ]


def _built() -> bool:
    """The C extensions and every mypyc module were built here (`make`)."""
    return all(
        any((ROOT / os.path.dirname(p)).glob(os.path.splitext(os.path.basename(p))[0] + ".*.so"))
        for p in [*_compiled(), "pipeline/_wirescan.c", "pipeline/_jsonwire.c"]
    )


_CONFIG = {
    "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
    "exporters": {"debug": {}},
    "service": {
        "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["debug"]}},
        "telemetry": {"metrics": {"level": "none"}},
    },
}


@pytest.mark.parametrize("pure", ["0", "1"])
def test_startup_logs_which_native_code_runs(collector_factory, pure):
    """`tracesieve run` says in one line whether the native paths are in use."""
    c = collector_factory(_CONFIG, env={"TRACESIEVE_PURE_PYTHON": pure})
    lines = [ln for ln in c.output.splitlines() if "native code:" in ln]
    assert c.stop() == 0
    assert len(lines) == 1, c.output
    if pure == "1":
        assert lines[0].endswith("native code: none, pure Python (TRACESIEVE_PURE_PYTHON=1)")
    elif _built():
        assert lines[0].endswith(
            "native code: wire scanner C, JSON parser C, 9 modules compiled (mypyc)"
        )
    else:  # a build without a compiler: the same line names what runs as Python
        assert "pure Python" in lines[0] or "as Python" in lines[0], lines[0]
