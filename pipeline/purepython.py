"""`TRACESIEVE_PURE_PYTHON=1` at run time: the modules setup.py compiles with mypyc load
from their `.py` sources, not from the `.so` beside them (see `pipeline.native`). Imported
by `pipeline/__init__.py` and `processors/__init__.py`, so the finder is in place before
any compiled module can be imported; standard library only."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType

PURE_PYTHON_ENV = "TRACESIEVE_PURE_PYTHON"

COMPILED = (
    "processors.genai.index",
    "processors.genai.analysis",
    "processors.genai.models",
    "processors.genai.tools",
    "processors.genai.write",
    "processors.genai.content",
    "pipeline.exporters.dataset.examples",
    "pipeline.wiresplit",
    "pipeline.wholetraces",
)
"""The modules setup.py compiles with mypyc (its `COMPILED`, as module names; a test
keeps the two equal)."""


def pure_python_requested() -> bool:
    """`TRACESIEVE_PURE_PYTHON=1`: run everything as Python, whatever was built."""
    return os.environ.get(PURE_PYTHON_ENV) == "1"


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Finds the compiled modules' `.py` sources, so the `.so` beside them is not loaded."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in COMPILED or not path:
            return None
        leaf = fullname.rpartition(".")[2]
        for directory in path:
            source = os.path.join(directory, leaf + ".py")
            if os.path.isfile(source):
                return importlib.util.spec_from_file_location(fullname, source)
        return None


def install_source_finder() -> None:
    """With `TRACESIEVE_PURE_PYTHON=1`, load the compiled modules from their sources
    (idempotent; does nothing otherwise)."""
    if pure_python_requested() and not any(isinstance(f, _SourceFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceFinder())
