"""Benchmarks and load tools (soak, load generator)."""
