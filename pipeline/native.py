"""Which native code runs: the C wire scanner (`pipeline._wirescan`) and the modules
compiled with mypyc (setup.py's `COMPILED`), or their pure-Python twins.

Both are optional at build time (setup.py: no compiler, or `TRACESIEVE_PURE_PYTHON=1`
when installing, gives a pure-Python install). At run time `TRACESIEVE_PURE_PYTHON=1`
makes a native install run as Python too: `pipeline.wirescan` leaves `_wirescan` alone,
and a finder put first on `sys.meta_path` (by `pipeline/__init__.py` and
`processors/__init__.py`, before anything compiled can be imported) loads each compiled
module from its `.py` instead of the `.so` beside it. The test suite's pure-Python pass
(`make test-pure`) runs that way.

`describe()` is the line `tracesieve run` logs at startup, so a user sees which it is.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

PURE_PYTHON_ENV = "TRACESIEVE_PURE_PYTHON"

COMPILED = (
    "processors.genai.index",
    "processors.genai.analysis",
    "processors.genai.models",
    "processors.genai.tools",
    "processors.genai.write",
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


@dataclass(frozen=True)
class NativeStatus:
    scanner: bool  # pipeline._wirescan (C) is in use
    compiled: tuple[str, ...]  # modules running as mypyc-compiled code
    interpreted: tuple[str, ...]  # modules of COMPILED running as Python
    pure_requested: bool


def _is_compiled(module: ModuleType) -> bool:
    return str(getattr(module, "__file__", "") or "").endswith((".so", ".pyd"))


def status() -> NativeStatus:
    """What is in use now (imports the modules concerned)."""
    from pipeline import wirescan

    compiled: list[str] = []
    interpreted: list[str] = []
    for name in COMPILED:
        (compiled if _is_compiled(importlib.import_module(name)) else interpreted).append(name)
    return NativeStatus(
        wirescan.NATIVE, tuple(compiled), tuple(interpreted), pure_python_requested()
    )


def describe(st: NativeStatus | None = None) -> str:
    """One line: `native code: wire scanner C, 7 modules compiled (mypyc)`, or which
    parts run as Python and why."""
    st = st or status()
    if not st.scanner and not st.compiled:
        why = (
            f"{PURE_PYTHON_ENV}=1"
            if st.pure_requested
            else f"not built: no compiler, or {PURE_PYTHON_ENV}=1 at install"
        )
        return f"native code: none, pure Python ({why})"
    scanner = "wire scanner C" if st.scanner else "wire scanner Python (_wirescan not built)"
    n = len(COMPILED)
    if not st.interpreted:
        modules = f"{n} modules compiled (mypyc)"
    else:
        modules = f"{len(st.compiled)} of {n} modules compiled (mypyc), as Python: " + ", ".join(
            st.interpreted
        )
    return f"native code: {scanner}, {modules}"


__all__ = [
    "COMPILED",
    "PURE_PYTHON_ENV",
    "NativeStatus",
    "describe",
    "install_source_finder",
    "pure_python_requested",
    "status",
]
