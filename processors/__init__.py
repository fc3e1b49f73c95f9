"""Processors: one module per processor type, each with a module-level `factory`.
They are listed in `pipeline.registry`."""

from pipeline import purepython as _purepython

_purepython.install_source_finder()  # TRACESIEVE_PURE_PYTHON=1: compiled modules as Python
