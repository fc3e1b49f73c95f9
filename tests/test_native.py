"""The native builds (setup.py): the C wire scanner and the mypyc-compiled modules are the
ones built from the sources here, not stale leftovers of an earlier checkout."""

from __future__ import annotations

import ast
import importlib
import os
import shutil
from pathlib import Path

import pytest

from pipeline import jsonwire, wirescan

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
    native = makefile.split("NATIVE :=", 1)[1].split("\n\n", 1)[0].replace("\\\n", " ")
    assert native.split() == _compiled()


def test_the_wire_scanner_is_native_where_a_compiler_was_found():
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler here: the pure-Python fallback runs")
    assert wirescan.NATIVE, "pipeline._wirescan was not built, though a C compiler is here"
    assert jsonwire.NATIVE, "pipeline._jsonwire was not built, though a C compiler is here"
