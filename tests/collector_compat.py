"""How many of the OTel Collector's own configs load in tracesieve: a local check, run over
copies of the Collector's READMEs and component testdata (never committed here).

    python -m tests.collector_compat /work/collector-testdata [--repo DIR] [--verbose]

The directory holds `core/...` and `contrib/...` trees in the Collector's layout
(`receiver/otlpreceiver/testdata/*.yaml`, `.../README.md`). `--repo` names the tracesieve
checkout to validate with (default: this one), so an older checkout gives the "before".

Units counted, as the Collector's own tests load them:
- a testdata file is read as its `config_test.go` reads it: each component block in it
  (the whole file for core components, one block per component id otherwise) is one
  unit, wired into a minimal traces pipeline (an `otlp` receiver and a `debug` exporter
  around it);
- a README YAML block with a `service` section is validated as it is; one without, block
  by block as above.
Each unit goes through what `tracesieve validate` does (load, then build the graph).
Blocks the Collector's tests expect to fail (`EXPECTED_ERRORS`) must fail here too; every
other block must load. Prints the counts and each unit that does not do what it should.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any

import yaml

# directory -> (kind, tracesieve type) of the component its testdata configures
COMPONENTS: dict[str, tuple[str, str]] = {
    "receiver/otlpreceiver": ("receiver", "otlp"),
    "receiver/kafkareceiver": ("receiver", "kafka"),
    "processor/batchprocessor": ("processor", "batch"),
    "processor/memorylimiterprocessor": ("processor", "memory_limiter"),
    "processor/tailsamplingprocessor": ("processor", "tail_sampling"),
    "processor/groupbytraceprocessor": ("processor", "groupbytrace"),
    "processor/attributesprocessor": ("processor", "attributes"),
    "exporter/otlpexporter": ("exporter", "otlp_grpc"),
    "exporter/otlphttpexporter": ("exporter", "otlp_http"),
    "exporter/debugexporter": ("exporter", "debug"),
    "exporter/kafkaexporter": ("exporter", "kafka"),
    "exporter/fileexporter": ("exporter", "file"),
    "extension/healthcheckextension": ("extension", "health_check"),
    "connector/forwardconnector": ("connector", "forward"),
    "connector/routingconnector": ("connector", "routing"),
}
SECTIONS = {
    "receivers": "receiver",
    "processors": "processor",
    "exporters": "exporter",
    "extensions": "extension",
    "connectors": "connector",
}

# (path under the tree, component id or "*") -> what the Collector's config_test.go says
EXPECTED_ERRORS: dict[tuple[str, str], str] = {
    (
        "receiver/otlpreceiver/testdata/typo_default_proto_config.yaml",
        "*",
    ): "'protocols' has invalid keys: htttp",
    (
        "receiver/otlpreceiver/testdata/bad_proto_config.yaml",
        "*",
    ): "'protocols' has invalid keys: thrift",
    (
        "receiver/otlpreceiver/testdata/bad_no_proto_config.yaml",
        "*",
    ): "must specify at least one protocol",
    (
        "receiver/otlpreceiver/testdata/invalid_traces_path.yaml",
        "*",
    ): "invalid HTTP URL path set for signal",
    (
        "receiver/otlpreceiver/testdata/invalid_metrics_path.yaml",
        "*",
    ): "invalid HTTP URL path set for signal",
    (
        "receiver/otlpreceiver/testdata/invalid_logs_path.yaml",
        "*",
    ): "invalid HTTP URL path set for signal",
    (
        "receiver/otlpreceiver/testdata/invalid_profiles_path.yaml",
        "*",
    ): "invalid HTTP URL path set for signal",
    ("exporter/otlpexporter/testdata/invalid_configs.yaml", "*"): "(each id an error case)",
    (
        "exporter/otlphttpexporter/testdata/bad_empty_config.yaml",
        "*",
    ): "at least one endpoint must be specified",
    ("exporter/otlphttpexporter/testdata/bad_invalid_encoding.yaml", "*"): "invalid encoding",
    (
        "exporter/debugexporter/testdata/config_output_paths_empty.yaml",
        "*",
    ): "output_paths must not be empty when use_internal_logger is false",
    (
        "exporter/debugexporter/testdata/config_verbosity_typo.yaml",
        "*",
    ): "has invalid keys: verBosity",
    ("exporter/fileexporter/testdata/config.yaml", "file"): "path must be non-empty",
    (
        "exporter/fileexporter/testdata/config.yaml",
        "file/format_error",
    ): 'invalid value (expected one of "json", "proto"): "text"',
    (
        "exporter/fileexporter/testdata/config.yaml",
        "file/compression_error",
    ): 'invalid value (expected one of "", "zstd"): "gzip"',
    ("exporter/fileexporter/testdata/config-compression-error.yaml", "*"): "compression: gzip",
    ("exporter/fileexporter/testdata/config-format-error.yaml", "*"): "invalid key Format",
    (
        "exporter/kafkaexporter/testdata/config-partitioning-failed.yaml",
        "kafka",
    ): "partition_logs_by_resource_attributes and partition_logs_by_trace_id cannot both be enabled",
    (
        "exporter/kafkaexporter/testdata/config-partitioning-failed.yaml",
        "kafka/multiple_partitioner",
    ): "at most one record_partitioner",
    (
        "exporter/kafkaexporter/testdata/config-partitioning-failed.yaml",
        "kafka/extension_not_set",
    ): "record_partitioner extension must be set",
    (
        "exporter/kafkaexporter/testdata/config-partitioning-failed.yaml",
        "kafka/invalid_sticky_key_hasher",
    ): "invalid hasher",
    (
        "exporter/kafkaexporter/testdata/config-topic-from-metadata-failed.yaml",
        "*",
    ): "topic_from_metadata_key must be present in include_metadata_keys",
    (
        "exporter/kafkaexporter/testdata/config-batch-partition-validation-failed.yaml",
        "*",
    ): "batch partition metadata_keys must include include_metadata_keys",
    (
        "exporter/kafkaexporter/testdata/invalid-config.yaml",
        "*",
    ): "snappy has no compression levels",
    (
        "extension/healthcheckextension/testdata/config.yaml",
        "health_check/missingendpoint",
    ): "bad config: endpoint must be specified",
    (
        "extension/healthcheckextension/testdata/config.yaml",
        "health_check/invalidthreshold",
    ): "bad config: exporter_failure_threshold expects a positive number",
    (
        "extension/healthcheckextension/testdata/config.yaml",
        "health_check/invalidpath",
    ): "bad config: path must start with /",
    (
        "extension/healthcheckextension/testdata/config_bad.yaml",
        "health_check/missingendpoint",
    ): "bad config: endpoint must be specified",
    (
        "extension/healthcheckextension/testdata/config_bad.yaml",
        "health_check/invalidthreshold",
    ): "bad config: exporter_failure_threshold expects a positive number",
    (
        "processor/tailsamplingprocessor/testdata/numeric_attribute_with_minvalue_greather_than_maxvalue.yaml",
        "*",
    ): "max_value should be greater than min_value",
    (
        "processor/tailsamplingprocessor/testdata/numeric_attribute_without_minvalue_or_maxvalue.yaml",
        "*",
    ): "min_value and max_value are not set",
    # valid as configs, but not in a traces pipeline (filterspan refuses log matchers)
    (
        "processor/attributesprocessor/testdata/config.yaml",
        "attributes/log_body_regexp",
    ): "log_bodies should not be specified for trace spans",
    (
        "processor/attributesprocessor/testdata/config.yaml",
        "attributes/log_severity_regexp",
    ): "log_severity_texts should not be specified for trace spans",
}

# README blocks that are illustrations, not configs: left out of the counts
NOT_CONFIGS: dict[str, str] = {
    "connector/forwardconnector/README.md#1": "placeholder component types foo and bar",
    "connector/forwardconnector/README.md#2": "placeholder types foo/bar, components with no settings",
    "connector/forwardconnector/README.md#3": "placeholder types foo/bar/sample, no settings",
    "connector/forwardconnector/README.md#4": "placeholder types foo/bar/filter",
    "exporter/otlpexporter/README.md#2": '"..." stands for the rest of the config (not YAML)',
    "exporter/otlphttpexporter/README.md#2": '"..." stands for the rest of the config (not YAML)',
    "exporter/otlphttpexporter/README.md#3": '"..." stands for the rest of the config (not YAML)',
}
TLS_FILES = ("cert_file", "key_file", "ca_file", "client_ca_file")

FILLER_RECEIVER = {"otlp/filler": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}}
FILLER_EXPORTER = {"debug/filler": {}}


@dataclass
class Unit:
    source: str  # path under the tree, with "#n" for a README block
    id: str  # the component id, or "(full config)"
    config: dict[str, Any]
    expected_error: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    with_files: dict[str, Any] = field(default_factory=dict)  # result with real TLS files

    @property
    def ok(self) -> bool:
        loaded = bool(self.result.get("ok"))
        return loaded if self.expected_error is None else not loaded


def component_of(rel: str) -> tuple[str, str] | None:
    for prefix, comp in COMPONENTS.items():
        if rel.startswith(prefix + "/"):
            return comp
    return None


def _pipelines_of_routing(body: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for route in body.get("table") or []:
        if isinstance(route, dict):
            names += [p for p in route.get("pipelines") or [] if isinstance(p, str)]
    names += [p for p in body.get("default_pipelines") or [] if isinstance(p, str)]
    return list(dict.fromkeys(names))


def wrap(kind: str, cid: str, body: Any) -> dict[str, Any]:
    """A minimal traces config around one component block."""
    cfg: dict[str, Any] = {
        "receivers": dict(FILLER_RECEIVER),
        "exporters": dict(FILLER_EXPORTER),
        "service": {
            "pipelines": {},
            "telemetry": {"metrics": {"level": "none"}},
        },
    }
    pipes = cfg["service"]["pipelines"]
    if kind == "receiver":
        cfg["receivers"] = {cid: body}
        pipes["traces"] = {"receivers": [cid], "exporters": ["debug/filler"]}
    elif kind == "processor":
        cfg["processors"] = {cid: body}
        pipes["traces"] = {
            "receivers": ["otlp/filler"],
            "processors": [cid],
            "exporters": ["debug/filler"],
        }
    elif kind == "exporter":
        cfg["exporters"] = {cid: body}
        pipes["traces"] = {"receivers": ["otlp/filler"], "exporters": [cid]}
    elif kind == "extension":
        cfg["extensions"] = {cid: body}
        cfg["service"]["extensions"] = [cid]
        pipes["traces"] = {"receivers": ["otlp/filler"], "exporters": ["debug/filler"]}
    else:  # connector
        cfg["connectors"] = {cid: body}
        pipes["traces/in"] = {"receivers": ["otlp/filler"], "exporters": [cid]}
        outs = _pipelines_of_routing(body) if isinstance(body, dict) else []
        outs = [p for p in outs if p.split("/")[0] == "traces"] or ["traces/out"]
        for p in outs:
            pipes[p] = {"receivers": [cid], "exporters": ["debug/filler"]}
    return cfg


def units_of_doc(rel: str, doc: Any, readme: bool) -> list[Unit]:
    comp = component_of(rel)
    if not isinstance(doc, dict) and doc is not None:
        return [Unit(rel, "(not a map)", {})]
    doc = doc or {}
    if readme and "service" in doc:
        return [Unit(rel, "(full config)", doc)]
    out: list[Unit] = []
    if any(k in SECTIONS for k in doc):
        for section, kind in SECTIONS.items():
            for cid, body in (doc.get(section) or {}).items():
                if cid == "nop" or cid.startswith("nop/"):
                    continue  # the Collector's test-only fillers
                out.append(Unit(rel, str(cid), wrap(kind, str(cid), body)))
        return out
    if comp is None:
        return []
    kind, type_ = comp
    if rel.endswith("otlpexporter/testdata/invalid_configs.yaml"):  # named error cases
        return [
            Unit(rel, f"{type_}/{k}", wrap(kind, f"{type_}/{k}", body)) for k, body in doc.items()
        ]
    # contrib testdata names blocks by id, in the Collector's type names
    names = {type_, "otlp" if type_ == "otlp_grpc" else type_}
    if doc and all(str(k).partition("/")[0] in names for k in doc):
        for k, body in doc.items():
            name = str(k).partition("/")[2]
            cid = f"{type_}/{name}" if name else type_
            out.append(Unit(rel, str(k), wrap(kind, cid, body)))
        return out
    return [Unit(rel, type_, wrap(kind, type_, doc))]


def expected(rel: str, cid: str) -> str | None:
    key = rel.split("#", 1)[0]
    return EXPECTED_ERRORS.get((key, cid)) or EXPECTED_ERRORS.get((key, "*"))


def collect(tree: str) -> list[Unit]:
    units: list[Unit] = []
    for root, _, files in os.walk(tree):
        for name in sorted(files):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, tree)
            sub = rel.split(os.sep, 1)[1] if os.sep in rel else rel  # drop core/, contrib/
            if name.endswith(".yaml"):
                with open(path) as fh:
                    text = fh.read()
                docs = [(rel, text)]
                readme = False
            elif name == "README.md":
                with open(path) as fh:
                    blocks = re.findall(r"```ya?ml\n(.*?)```", fh.read(), re.S)
                docs = [(f"{rel}#{i + 1}", b) for i, b in enumerate(blocks)]
                readme = True
            else:
                continue
            for where, text in docs:
                if where.split(os.sep, 1)[-1] in NOT_CONFIGS:
                    continue
                try:
                    doc = yaml.safe_load(text)
                except yaml.YAMLError as exc:
                    units.append(
                        Unit(
                            where,
                            "(YAML)",
                            {},
                            result={"ok": False, "errors": [f"invalid YAML: {exc}"]},
                        )
                    )
                    continue
                for u in units_of_doc(sub, doc, readme):
                    u.source = where
                    u.expected_error = expected(sub, u.id)
                    units.append(u)
    return units


def _missing_tls(node: Any, certs: dict[str, str]) -> Any:
    """The config with TLS file paths that do not exist replaced by real ones."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k in TLS_FILES and isinstance(v, str) and not os.path.exists(v):
                out[k] = certs["ca" if "ca" in k else k.split("_")[0]]
            else:
                out[k] = _missing_tls(v, certs)
        return out
    if isinstance(node, list):
        return [_missing_tls(v, certs) for v in node]
    return node


def _certs(directory: str) -> dict[str, str]:
    from tests.pipeline.certs import CA

    ca = CA(directory, "compat")
    pair = ca.issue("localhost", server=True)
    return {"ca": ca.file, "cert": pair.cert, "key": pair.key}


WORKER = r"""
import json, sys, logging
logging.disable(logging.CRITICAL)
sys.path.insert(0, sys.argv[1])
from pipeline import config as config_mod
from pipeline.errors import ConfigError
from pipeline.graph import Graph
from pipeline.registry import REGISTRY
from pipeline.telemetry import Telemetry
out = []
for path in sys.argv[2:]:
    try:
        cfg = config_mod.load([path], REGISTRY)
        Graph(cfg, REGISTRY, Telemetry())
        out.append({"ok": True, "warnings": list(getattr(cfg, "warnings", []))})
    except ConfigError as exc:
        out.append({"ok": False, "errors": exc.errors})
    except Exception as exc:
        out.append({"ok": False, "errors": ["crash: %s: %s" % (type(exc).__name__, exc)]})
print(json.dumps(out))
"""


def _run(configs: list[dict[str, Any]], repo: str, tmp: str) -> list[dict[str, Any]]:
    paths = []
    for i, cfg in enumerate(configs):
        p = os.path.join(tmp, f"unit-{len(os.listdir(tmp))}-{i}.yaml")
        with open(p, "w") as fh:
            yaml.safe_dump(cfg, fh, sort_keys=False)
        paths.append(p)
    res = subprocess.run(
        [sys.executable, "-c", WORKER, os.path.abspath(repo), *paths],
        capture_output=True,
        text=True,
        cwd=tmp,
        timeout=600,
    )
    if res.returncode != 0:
        raise SystemExit(f"worker failed:\n{res.stderr}")
    out: list[dict[str, Any]] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def validate(units: list[Unit], repo: str) -> None:
    todo = [u for u in units if not u.result]
    with tempfile.TemporaryDirectory(prefix="collector-compat-") as tmp:
        for u, r in zip(todo, _run([u.config for u in todo], repo, tmp), strict=True):
            u.result = r
        # blocks that fail only for certificate files they name (absent here): again,
        # with real files in their place, to tell that from other problems
        again = [
            u
            for u in todo
            if u.expected_error is None
            and not u.result.get("ok")
            and all("cannot read" in e for e in u.result.get("errors") or ["x"])
        ]
        if again:
            certs = _certs(tmp)
            configs = [_missing_tls(u.config, certs) for u in again]
            for u, r in zip(again, _run(configs, repo, tmp), strict=True):
                u.with_files = r


def report(units: list[Unit], verbose: bool) -> dict[str, int]:
    valid = [u for u in units if u.expected_error is None]
    errors = [u for u in units if u.expected_error is not None]
    loaded = sum(u.ok for u in valid)
    with_files = sum(bool(u.with_files.get("ok")) for u in valid)
    still = sum(u.ok for u in errors)
    print(f"valid Collector configs that load:  {loaded}/{len(valid)}")
    print(f"  and with the certificate files they name in place: {loaded + with_files}")
    print(f"Collector error cases still errors: {still}/{len(errors)}")
    for u in units:
        if u.ok and not verbose:
            continue
        mark = "ok  " if u.ok else "FAIL"
        what = "loads" if u.result.get("ok") else (u.result.get("errors") or ["?"])[0]
        if u.with_files:
            got = u.with_files
            what += " -> with real files: " + (
                "loads" if got.get("ok") else (got.get("errors") or ["?"])[0]
            )
        want = f"  [Collector: {u.expected_error}]" if u.expected_error else ""
        print(f"{mark} {u.source} {u.id}: {what}{want}")
    return {
        "valid": len(valid),
        "loaded": loaded,
        "loaded_with_files": loaded + with_files,
        "errors": len(errors),
        "still_errors": still,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("tree", help="copies of the Collector's files (core/..., contrib/...)")
    p.add_argument("--repo", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    p.add_argument("--verbose", action="store_true", help="list the units that pass too")
    p.add_argument("--json", help="write the counts here")
    args = p.parse_args(argv)
    if not os.path.isdir(args.tree):
        print(f"{args.tree}: not a directory; nothing to check", file=sys.stderr)
        return 0
    units = collect(args.tree)
    validate(units, args.repo)
    counts = report(units, args.verbose)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(counts, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
