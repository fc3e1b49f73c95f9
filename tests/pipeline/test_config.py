"""Config loading: the OTel Collector's format, env expansion, merges, and every error
reported at once with its path and exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipeline import config as config_mod
from pipeline.errors import ConfigError
from pipeline.registry import REGISTRY

MINIMAL = """
receivers:
  otlp:
    protocols:
      grpc:
exporters:
  debug:
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
"""


def write(tmp_path, text: str, name: str = "c.yaml") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def errors_of(tmp_path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        config_mod.load([write(tmp_path, text)], REGISTRY)
    return exc.value.errors


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_minimal_config_gets_otel_defaults(tmp_path):
    cfg = config_mod.load([write(tmp_path, MINIMAL)], REGISTRY)
    (rid,) = cfg.components["receiver"]
    grpc = cfg.components["receiver"][rid].protocols.grpc
    assert grpc.endpoint == "127.0.0.1:4317"
    assert grpc.max_recv_msg_size_mib == 64
    assert cfg.pipelines["traces"].exporters[0].type == "debug"


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        (
            "processors:\n  batch/x:\n    timout: 1s\n",
            "processors::batch/x: unknown field 'timout'",
        ),
        ("processors:\n  nope: {}\n", 'processors::nope: unknown type: "nope" for id: "nope"'),
        (
            "processors:\n  batch:\n    timeout: soon\n",
            "processors::batch::timeout: invalid duration 'soon'",
        ),
        (  # an unset variable is "" (as in the Collector): the empty path is the error
            "exporters:\n  file:\n    path: ${env:TS_TEST_UNSET_VAR}\n",
            "exporters::file::path: path must be non-empty",
        ),
    ],
)
def test_each_error_has_its_path(tmp_path, snippet, expected):
    errs = errors_of(tmp_path, MINIMAL + snippet)
    assert any(e.startswith(expected) for e in errs), errs


def test_dangling_references_and_all_errors_at_once(tmp_path):
    text = MINIMAL.replace(
        "exporters: [debug]", "exporters: [debug, otlp/b]\n      processors: [batch/y]"
    )
    text += "processors:\n  batch:\n    timout: 1s\n    send_batch_size: lots\n"
    errs = errors_of(tmp_path, text)
    assert (
        'service::pipelines::traces: references exporter "otlp/b" which is not configured' in errs
    )
    assert (
        'service::pipelines::traces: references processor "batch/y" which is not configured' in errs
    )
    assert "processors::batch: unknown field 'timout'" in errs
    assert any(e.startswith("processors::batch::send_batch_size:") for e in errs)


def test_unset_env_var_is_empty_with_a_warning_naming_it(tmp_path, monkeypatch):
    monkeypatch.delenv("TS_TEST_UNSET_VAR", raising=False)
    text = MINIMAL.replace(
        "exporters:\n  debug:\n",
        "exporters:\n  debug:\n    verbosity: basic${env:TS_TEST_UNSET_VAR}\n",
    )
    cfg = config_mod.load([write(tmp_path, text)], REGISTRY)
    (debug,) = cfg.components["exporter"].values()
    assert debug.verbosity == "basic"
    (warning,) = cfg.warnings
    assert warning.startswith(
        "exporters::debug::verbosity: environment variable 'TS_TEST_UNSET_VAR' is not set"
    )
    res = cli("validate", "--config", write(tmp_path, text))
    assert res.returncode == 0, res.stderr
    assert "warning: exporters::debug::verbosity: environment variable 'TS_TEST_UNSET_VAR'" in (
        res.stderr
    )


def test_env_expansion_typed_default_and_escape(tmp_path, monkeypatch):
    monkeypatch.setenv("TS_BATCH", "123")
    text = MINIMAL + (
        "processors:\n  batch:\n    send_batch_size: ${env:TS_BATCH}\n"
        "    send_batch_max_size: ${env:TS_UNSET_X:-456}\n"
    )
    text = text.replace(
        "exporters:\n  debug:\n",
        "exporters:\n  debug:\n  file:\n    path: /tmp/$$x-${TS_BATCH}.jsonl\n",
    )
    cfg = config_mod.load([write(tmp_path, text)], REGISTRY)
    (batch,) = cfg.components["processor"].values()
    assert batch.send_batch_size == 123 and batch.send_batch_max_size == 456
    files = [v for k, v in cfg.components["exporter"].items() if k.type == "file"]
    assert files[0].path == "/tmp/$x-123.jsonl"


def test_several_configs_deep_merge(tmp_path):
    a = write(tmp_path, MINIMAL, "a.yaml")
    b = write(
        tmp_path,
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:5555\n",
        "b.yaml",
    )
    cfg = config_mod.load([a, b, "yaml:service::telemetry::logs::level: debug"], REGISTRY)
    (r,) = cfg.components["receiver"].values()
    assert r.protocols.grpc.endpoint == "127.0.0.1:5555"
    assert cfg.service.telemetry.logs.level == "debug"
    assert cfg.pipelines["traces"].receivers[0].type == "otlp"


def test_cli_validate_exit_2_without_traceback(tmp_path):
    path = write(tmp_path, MINIMAL + "processors:\n  batch/x:\n    timout: 1s\n")
    res = cli("validate", "--config", path)
    assert res.returncode == 2
    assert "invalid configuration (1 error):" in res.stderr
    assert "processors::batch/x: unknown field 'timout'" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout


def test_cli_validate_ok_and_components():
    res = cli("validate", "--config", "configs/local.yaml")
    assert res.returncode == 0, res.stderr
    comps = cli("components")
    assert comps.returncode == 0
    for name in (
        "otlp",
        "batch",
        "memory_limiter",
        "otlp_grpc",
        "otlp_http",
        "file",
        "debug",
        "health_check",
    ):
        assert f"  {name} " in comps.stdout


@pytest.mark.parametrize("command", ["run", "validate"])
@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        (
            "processors:\n  batch/x:\n    timout: 1s\n",
            "processors::batch/x: unknown field 'timout'",
        ),
        (
            "processors:\n  nope/x: {}\n",
            'processors::nope/x: unknown type: "nope" for id: "nope/x" (valid values: [',
        ),
        (
            "processors:\n  batch:\n    timeout: soon\n",
            "processors::batch::timeout: invalid duration 'soon'",
        ),
        (  # an unset variable is "" (as in the Collector): the empty path is the error
            "exporters:\n  file:\n    path: ${env:TS_TEST_UNSET_VAR}\n",
            "exporters::file::path: path must be non-empty",
        ),
        (
            "extensions:\n  health_check: {}\n",
            None,  # valid on its own; the dangling reference is added below
        ),
    ],
    ids=["unknown-field", "unknown-type", "bad-duration", "missing-env", "dangling-ref"],
)
def test_cli_config_errors_exit_2_with_path(tmp_path, command, snippet, expected):
    text = MINIMAL + snippet
    if expected is None:
        text = text.replace("exporters: [debug]", "exporters: [debug, otlp_grpc/b]")
        expected = (
            'service::pipelines::traces: references exporter "otlp_grpc/b" which is not configured'
        )
    res = cli(command, "--config", write(tmp_path, text))
    assert res.returncode == 2, res.stderr
    assert expected in res.stderr
    assert res.stderr.startswith("invalid configuration (")
    assert "Traceback" not in res.stderr + res.stdout


def test_cli_unreadable_file_and_bad_yaml_exit_2(tmp_path):
    res = cli("run", "--config", str(tmp_path / "missing.yaml"))
    assert res.returncode == 2 and "cannot read file" in res.stderr
    res = cli("validate", "--config", write(tmp_path, "receivers: [\n"))
    assert res.returncode == 2 and "invalid YAML (line" in res.stderr
    assert "Traceback" not in res.stderr


def test_cli_port_in_use_exits_1_without_traceback(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        text = (
            "receivers:\n  otlp:\n    protocols:\n      http:\n"
            f"        endpoint: 127.0.0.1:{port}\n"
            "exporters:\n  debug:\n"
            "service:\n  telemetry: {metrics: {level: none}}\n"
            "  pipelines:\n    traces: {receivers: [otlp], exporters: [debug]}\n"
        )
        res = cli("run", "--config", write(tmp_path, text))
    assert res.returncode == 1, res.stderr
    assert "cannot listen on" in res.stderr
    assert "Traceback" not in res.stderr
