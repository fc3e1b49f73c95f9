"""tracesieve's runtime: config, component model, pipeline graph, receivers, exporters,
queues and self-telemetry. Processors live in the top-level `processors` package."""

__version__ = "0.1.0"

from pipeline import purepython as _purepython

# TRACESIEVE_PURE_PYTHON=1: the mypyc-compiled modules load from their sources (before
# any of them can be imported)
_purepython.install_source_finder()
