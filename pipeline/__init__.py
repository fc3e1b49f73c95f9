"""tracesieve's runtime: config, component model, pipeline graph, receivers, exporters,
queues and self-telemetry. Processors live in the top-level `processors` package."""

__version__ = "0.1.0"
