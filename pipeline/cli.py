"""`tracesieve` command line: run, validate, components, print-config, audit.

Exit status: 0 success, 1 runtime failure (`audit --strict`: problems in the input), 2
invalid configuration or usage (`audit`: an unreadable input or one of unknown format).
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
from pipeline import native
from pipeline.configtypes import to_builtins
from pipeline.errors import ConfigError
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
    aud = sub.add_parser(
        "audit",
        help="classify the traces a dump holds (files, stdin, a Kafka topic) and report",
        description=(
            "Run the pipeline's processors (groupbytrace, the GenAI enrichment, cleanliness) "
            "over traces that already exist and report how much of them is usable, and why "
            "not. INPUT: files, globs or directories of what an OTel Collector's file exporter "
            "writes (OTLP JSON lines or length-prefixed protobuf; plain, gzip or zstd; "
            "detected from the content), an OTLP JSON document, - for stdin, or "
            "kafka://HOST:PORT/TOPIC (read from the earliest offsets to the end offsets "
            "found at start, in no consumer group). See docs/audit.md."
        ),
    )
    aud.add_argument("inputs", nargs="+", metavar="INPUT")
    aud.add_argument(
        "--config",
        action="append",
        help="the processors' config, as for `run` (default: those of configs/local.yaml); "
        "its first kafka receiver gives kafka:// inputs their TLS and SASL",
    )
    aud.add_argument("--report-json", metavar="FILE", help="the report as JSON (docs/audit.md)")
    aud.add_argument("--report-html", metavar="FILE", help="the report as one HTML file")
    aud.add_argument(
        "--output",
        metavar="FILE",
        help="the enriched spans: length-prefixed protobuf if FILE ends in .pb, .binpb, .proto "
        "or .protobuf, else OTLP JSON lines",
    )
    aud.add_argument(
        "--keep",
        metavar="CLASSES",
        help="with --output: only traces of these classes (clean,noisy,...)",
    )
    aud.add_argument(
        "--dataset",
        metavar="FILE",
        help="training examples of the selected traces (default: clean ones) as JSON lines, "
        "with FILE's provenance sidecar; options from --config's dataset exporter "
        "(docs/dataset.md)",
    )
    aud.add_argument(
        "--dataset-format",
        choices=("openai_chat", "hf_chat"),
        help="with --dataset: OpenAI's fine-tuning chat format (default) or TRL's",
    )
    aud.add_argument(
        "--workers", type=int, metavar="N", help="worker processes (default: the CPU count)"
    )
    aud.add_argument("--strict", action="store_true", help="exit 1 on any problem in the input")
    aud.add_argument("--quiet", action="store_true", help="no progress bar")
    aud.add_argument(
        "--spill-dir", metavar="DIR", help="where the dump is partitioned to (default: $TMPDIR)"
    )
    aud.add_argument(
        "--partition-mib",
        type=int,
        default=256,
        metavar="MIB",
        help="spilled spans a worker holds at a time (default: 256; memory per worker is about 3x)",
    )
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
    from pipeline.registry import REGISTRY
    from pipeline.service import Service

    gc_threshold(os.environ.get("TRACESIEVE_GC_THRESHOLD"))  # a bad value fails here, as config
    cfg = config_mod.load(sources, REGISTRY)
    logs = cfg.service.telemetry.logs
    setup_logging(logs.level, logs.encoding)
    log.info("%s", native.describe())  # which native code is in use (pipeline.native)
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
    from pipeline.registry import REGISTRY
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
    from pipeline.registry import REGISTRY

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
    from pipeline.registry import REGISTRY

    for kind in ("receiver", "processor", "exporter", "connector", "extension"):
        print(f"{kind}s:")
        table = REGISTRY.table(kind)  # type: ignore[arg-type]
        for t in REGISTRY.types(kind):  # type: ignore[arg-type]
            f = table[t]
            alias = f" (alias: {', '.join(f.aliases)})" if f.aliases else ""
            print(f"  {t:<26} {f.stability:<11} {f.description}{alias}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from pipeline.audit.inputs import InputError
    from pipeline.audit.runner import Options, run

    opts = Options(
        inputs=args.inputs,
        config=args.config,
        report_json=args.report_json,
        report_html=args.report_html,
        output=args.output,
        keep=args.keep,
        workers=args.workers,
        strict=args.strict,
        quiet=args.quiet,
        spill_dir=args.spill_dir,
        partition_mib=args.partition_mib,
        dataset=args.dataset,
        dataset_format=args.dataset_format,
    )
    try:
        return run(opts)
    except InputError as exc:
        print(f"tracesieve audit: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError) as exc:  # a worker died, the disk filled up: no traceback
        print(f"tracesieve audit: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "audit":
            return cmd_audit(args)
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
    except BrokenPipeError:
        # the reader went away (`tracesieve print-config ... | head`): not an error of ours;
        # stdout is pointed at /dev/null so that the interpreter's final flush is quiet too
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
