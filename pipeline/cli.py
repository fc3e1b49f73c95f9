"""`tracesieve` command line: run, validate, components, print-config.

Exit status: 0 success, 1 runtime failure, 2 invalid configuration or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import yaml

from pipeline import config as config_mod
from pipeline.configtypes import to_builtins
from pipeline.errors import ConfigError
from pipeline.registry import REGISTRY
from pipeline.telemetry import setup_logging

log = logging.getLogger("tracesieve")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tracesieve",
        description="An OpenTelemetry-Collector-style stream processor for AI-agent traces.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    cfg_help = "config source: a YAML file, env:VAR or yaml:path::to::key: value (repeatable; later ones deep-merge)"
    run = sub.add_parser("run", help="run the collector")
    run.add_argument("--config", action="append", required=True, help=cfg_help)
    val = sub.add_parser(
        "validate", help="check a configuration and build its pipelines without starting them"
    )
    val.add_argument("--config", action="append", required=True, help=cfg_help)
    pc = sub.add_parser("print-config", help="print the resolved configuration with defaults")
    pc.add_argument("--config", action="append", required=True, help=cfg_help)
    sub.add_parser("components", help="list the available components")
    return p


def _run_loop(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    factory: Any = None
    try:
        import uvloop

        if os.environ.get("TRACESIEVE_LOOP", "uvloop") == "uvloop":
            factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        pass
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())


def cmd_run(sources: list[str]) -> int:
    from pipeline.gcpolicy import gc_threshold
    from pipeline.service import Service

    gc_threshold(os.environ.get("TRACESIEVE_GC_THRESHOLD"))  # a bad value fails here, as config
    cfg = config_mod.load(sources, REGISTRY)
    logs = cfg.service.telemetry.logs
    setup_logging(logs.level, logs.encoding)
    for w in cfg.warnings:
        log.warning("configuration: %s", w)

    async def main() -> int:
        service = Service(cfg, REGISTRY)
        try:
            return await service.run()
        except OSError as exc:
            log.error("cannot start: %s", exc)
            return 1

    return _run_loop(main)


def cmd_validate(sources: list[str]) -> int:
    from pipeline.graph import Graph
    from pipeline.telemetry import Telemetry

    cfg = config_mod.load(sources, REGISTRY)
    try:
        Graph(cfg, REGISTRY, Telemetry())  # builds every component without starting it
    except ConfigError as exc:
        raise ConfigError(exc.errors, cfg.warnings) from None
    for w in cfg.warnings:
        print(f"warning: {w}", file=sys.stderr)
    n = len(cfg.pipelines)
    print(f"configuration is valid: {n} pipeline{'s' if n != 1 else ''}")
    return 0


def cmd_print_config(sources: list[str]) -> int:
    cfg = config_mod.load(sources, REGISTRY)
    for w in cfg.warnings:
        print(f"warning: {w}", file=sys.stderr)
    out: dict[str, Any] = {}
    for section, kind in config_mod.SECTIONS.items():
        comps = cfg.components[kind]
        if comps:
            out[section] = {str(cid): to_builtins(v) for cid, v in comps.items()}
    out["service"] = to_builtins(cfg.service)
    yaml.safe_dump(out, sys.stdout, sort_keys=False)
    return 0


def cmd_components() -> int:
    for kind in ("receiver", "processor", "exporter", "connector", "extension"):
        print(f"{kind}s:")
        table = REGISTRY.table(kind)  # type: ignore[arg-type]
        for t in REGISTRY.types(kind):  # type: ignore[arg-type]
            f = table[t]
            alias = f" (alias: {', '.join(f.aliases)})" if f.aliases else ""
            print(f"  {t:<26} {f.stability:<11} {f.description}{alias}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args.config)
        if args.command == "validate":
            return cmd_validate(args.config)
        if args.command == "print-config":
            return cmd_print_config(args.config)
        return cmd_components()
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
