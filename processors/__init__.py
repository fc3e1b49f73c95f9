"""Processors: one module per processor type, each with a module-level `factory`.
They are listed in `pipeline.registry`."""
