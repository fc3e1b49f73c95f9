"""Which native code runs: the C wire scanner (`pipeline._wirescan`), the C OTLP JSON
parser (`pipeline._jsonwire`) and the modules compiled with mypyc (setup.py's
`COMPILED`), or their pure-Python twins.

Both are optional at build time (setup.py: no compiler, or `TRACESIEVE_PURE_PYTHON=1`
when installing, gives a pure-Python install). At run time `TRACESIEVE_PURE_PYTHON=1`
makes a native install run as Python too: `pipeline.wirescan` and `pipeline.jsonwire`
leave their C extensions alone, and a finder put first on `sys.meta_path` (`pipeline.purepython`, installed by
`pipeline/__init__.py` and `processors/__init__.py` before anything compiled can be
imported) loads each compiled module from its `.py` instead of the `.so` beside it. The
test suite's pure-Python pass (`make test-pure`) runs that way.

`describe()` is the line `tracesieve run` logs at startup, so a user sees which it is;
`python -m pipeline.native` prints it, and `--check-wheel WHEEL` checks that a wheel holds
every native module (the Dockerfile's build stage runs it).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

from pipeline.purepython import (
    COMPILED,
    PURE_PYTHON_ENV,
    install_source_finder,
    pure_python_requested,
)


@dataclass(frozen=True)
class NativeStatus:
    scanner: bool  # pipeline._wirescan (C) is in use
    json_parser: bool  # pipeline._jsonwire (C) is in use
    compiled: tuple[str, ...]  # modules running as mypyc-compiled code
    interpreted: tuple[str, ...]  # modules of COMPILED running as Python
    pure_requested: bool


def _is_compiled(module: ModuleType) -> bool:
    return str(getattr(module, "__file__", "") or "").endswith((".so", ".pyd"))


def status() -> NativeStatus:
    """What is in use now (imports the modules concerned)."""
    from pipeline import jsonwire, wirescan

    compiled: list[str] = []
    interpreted: list[str] = []
    for name in COMPILED:
        (compiled if _is_compiled(importlib.import_module(name)) else interpreted).append(name)
    return NativeStatus(
        wirescan.NATIVE,
        jsonwire.NATIVE,
        tuple(compiled),
        tuple(interpreted),
        pure_python_requested(),
    )


def describe(st: NativeStatus | None = None) -> str:
    """One line: `native code: wire scanner C, JSON parser C, 7 modules compiled (mypyc)`,
    or which parts run as Python and why."""
    st = st or status()
    if not st.scanner and not st.json_parser and not st.compiled:
        why = (
            f"{PURE_PYTHON_ENV}=1"
            if st.pure_requested
            else f"not built: no compiler, or {PURE_PYTHON_ENV}=1 at install"
        )
        return f"native code: none, pure Python ({why})"
    scanner = "wire scanner C" if st.scanner else "wire scanner Python (_wirescan not built)"
    parser = "JSON parser C" if st.json_parser else "JSON parser Python (_jsonwire not built)"
    n = len(COMPILED)
    if not st.interpreted:
        modules = f"{n} modules compiled (mypyc)"
    else:
        modules = f"{len(st.compiled)} of {n} modules compiled (mypyc), as Python: " + ", ".join(
            st.interpreted
        )
    return f"native code: {scanner}, {parser}, {modules}"


def native_files() -> tuple[str, ...]:
    """What a native build holds, as module paths without the `.<tag>.so` suffix: the C
    scanner and JSON parser, mypyc's shared library, and one stub per compiled module."""
    return (
        "pipeline/_wirescan",
        "pipeline/_jsonwire",
        "tracesieve_native__mypyc",
        *(name.replace(".", "/") for name in COMPILED),
    )


def missing_from_wheel(path: str) -> list[str]:
    """The native modules (`native_files`) that the wheel at `path` does not hold as
    extension modules."""
    import zipfile

    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
    return [
        m
        for m in native_files()
        if not any(n.startswith(m + ".") and n.endswith(".so") for n in names)
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m pipeline.native`: the startup line for this install;
    `python -m pipeline.native --check-wheel WHEEL`: exit 1 unless the wheel holds every
    native module (the Dockerfile's build stage runs it)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m pipeline.native", description=main.__doc__)
    p.add_argument("--check-wheel", metavar="WHEEL", help="a built tracesieve wheel")
    args = p.parse_args(argv)
    if args.check_wheel is None:
        print(describe())
        return 0
    missing = missing_from_wheel(args.check_wheel)
    if missing:
        print(f"{args.check_wheel}: native modules missing: {', '.join(missing)}", file=sys.stderr)
        return 1
    print(f"{args.check_wheel}: every native module is there ({len(native_files())})")
    return 0


__all__ = [
    "COMPILED",
    "PURE_PYTHON_ENV",
    "NativeStatus",
    "describe",
    "install_source_finder",
    "missing_from_wheel",
    "native_files",
    "pure_python_requested",
    "status",
]


if __name__ == "__main__":
    sys.exit(main())
