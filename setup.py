"""Native code; everything else is in pyproject.toml.

- `pipeline._wirescan` (C): reading spans from OTLP wire bytes (see pipeline/wirescan.py).
- `pipeline._jsonwire` (C): OTLP JSON straight to wire bytes (see pipeline/jsonwire.py).
- The GenAI index and analyses, and the wire splitting and trace views behind
  groupbytrace, cleanliness and tail_sampling, compiled with mypyc (`COMPILED`): the same
  typed Python, run as C. About 40% fewer instructions per span through the enrichment
  processors.

All are optional: without a compiler the build goes on and the same modules run as
Python (pipeline/wirescan.py has the scanner's Python twin, pipeline/jsonwire.py the JSON
parser's); TRACESIEVE_PURE_PYTHON=1 skips mypyc on purpose."""

import os

from setuptools import Extension, setup

COMPILED = [
    "processors/genai/index.py",
    "processors/genai/analysis.py",
    "processors/genai/models.py",
    "processors/genai/tools.py",
    "processors/genai/write.py",
    "processors/genai/content.py",
    "pipeline/exporters/dataset/examples.py",
    "pipeline/wiresplit.py",
    "pipeline/wholetraces.py",
]

ext_modules = [
    Extension(
        "pipeline._wirescan", ["pipeline/_wirescan.c"], optional=True, extra_compile_args=["-O2"]
    ),
    Extension(
        "pipeline._jsonwire", ["pipeline/_jsonwire.c"], optional=True, extra_compile_args=["-O2"]
    ),
]
if os.environ.get("TRACESIEVE_PURE_PYTHON") != "1":
    try:
        from mypyc.build import mypycify

        # errors are reported for the compiled modules only: what they import is read for
        # its types (as Any where a runtime dependency is not in the build environment),
        # and checked by `make check`, not here
        compiled = mypycify(
            ["--follow-imports=silent", *COMPILED], opt_level="3", group_name="tracesieve_native"
        )
    except (Exception, SystemExit) as exc:  # mypyc missing, or a type error: run as Python
        # from the Makefile (TRACESIEVE_NATIVE=require) a type error fails the build: a
        # silent fallback there would keep an older compiled build shadowing the new code
        if os.environ.get("TRACESIEVE_NATIVE") == "require":
            raise
        print(f"tracesieve: not compiling with mypyc ({exc!r})")
    else:
        for ext in compiled:
            ext.optional = True
        ext_modules += compiled

setup(ext_modules=ext_modules)
