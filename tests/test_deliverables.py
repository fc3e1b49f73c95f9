"""The shipped configs, the Dockerfile and the Kubernetes example: each config is valid,
the chaining and sidecar examples work as files (started through the CLI), and the
container and pod specs agree with the configs they run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.testing import (
    OTLPServer,
    export_grpc,
    read_json_lines,
    sample_request,
    span_index,
    spans_in,
    wait_for,
)

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
LOCAL = {  # every endpoint on a free port, so tests never clash with `make run`
    "TRACESIEVE_GRPC_ENDPOINT": "127.0.0.1:0",
    "TRACESIEVE_HTTP_ENDPOINT": "127.0.0.1:0",
    "TRACESIEVE_METRICS_ENDPOINT": "127.0.0.1:0",
    "TRACESIEVE_HEALTH_ENDPOINT": "127.0.0.1:0",
}


def validate(
    path: Path | str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "validate", "--config", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_config_is_valid(path):
    res = validate(path)
    assert res.returncode == 0, res.stderr


def test_chaining_example_end_to_end(collector_factory, tmp_path):
    out = str(tmp_path / "upstream.jsonl")
    upstream = collector_factory(
        (ROOT / "configs/chain-upstream.yaml").read_text(), env={**LOCAL, "TRACESIEVE_OUTPUT": out}
    )
    edge = collector_factory(
        (ROOT / "configs/chain-edge.yaml").read_text(),
        env={**LOCAL, "TRACESIEVE_UPSTREAM": upstream.endpoints["receivers::otlp/grpc"]},
    )
    sent = [sample_request(seed, n_spans=25) for seed in range(4)]
    for req in sent:
        export_grpc(edge.endpoints["receivers::otlp/grpc"], req)
    assert edge.stop() == 0  # a graceful stop delivers everything upstream
    assert wait_for(lambda: len(spans_in(read_json_lines(out))) >= 100)
    assert upstream.stop() == 0
    assert span_index(read_json_lines(out)) == span_index(sent)


def test_sidecar_config_forwards_upstream(collector_factory):
    with OTLPServer() as up:
        sidecar = collector_factory(
            (ROOT / "configs/sidecar-otlp.yaml").read_text(),
            env={**LOCAL, "TRACESIEVE_UPSTREAM": up.endpoint},
        )
        sent = [sample_request(seed, n_spans=10) for seed in range(3)]
        for req in sent:
            export_grpc(sidecar.endpoints["receivers::otlp/grpc"], req)
        assert "extensions::health_check/http" in sidecar.endpoints
        assert sidecar.stop() == 0
        assert span_index(up.requests) == span_index(sent)


def k8s_docs() -> dict[str, dict]:  # type: ignore[type-arg]
    docs = list(yaml.safe_load_all((ROOT / "configs/k8s/sidecar.yaml").read_text()))
    return {d["kind"]: d for d in docs}


def test_k8s_example_config_is_valid_and_probes_match(tmp_path):
    docs = k8s_docs()
    config_text = docs["ConfigMap"]["data"]["config.yaml"]
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (sidecar,) = [c for c in pod["initContainers"] if c["name"] == "tracesieve"]
    assert sidecar["restartPolicy"] == "Always"
    env = {e["name"]: e["value"] for e in sidecar["env"]}
    path = tmp_path / "config.yaml"
    path.write_text(config_text)
    res = validate(path, env)
    assert res.returncode == 0, res.stderr
    config = yaml.safe_load(config_text)
    health_port = int(config["extensions"]["health_check"]["endpoint"].rsplit(":", 1)[1])
    ports = {p["name"]: p["containerPort"] for p in sidecar["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = sidecar[probe]["httpGet"]
        assert ports[get["port"]] == health_port and get["path"] == "/"
    # the config is mounted where the args say
    (mount,) = sidecar["volumeMounts"]
    assert sidecar["args"] == ["--config", f"{mount['mountPath']}/config.yaml"]
    # the pod waits longer than tracesieve drains
    drain = int(config["service"]["shutdown_timeout"].rstrip("s"))
    assert pod["terminationGracePeriodSeconds"] > drain
    # the app sends where the sidecar listens
    (app,) = pod["containers"]
    app_env = {e["name"]: e["value"] for e in app["env"]}
    grpc_port = config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].rsplit(":", 1)[1]
    assert app_env["OTEL_EXPORTER_OTLP_ENDPOINT"].endswith(f":{grpc_port}")


def test_dockerfile_runs_tracesieve_as_a_non_root_user():
    lines = [
        ln.strip()
        for ln in (ROOT / "Dockerfile").read_text().splitlines()
        if ln.strip() and not ln.lstrip().startswith("#")
    ]
    # the runtime stage (the last; tests/test_image.py checks the build stage)
    lines = lines[max(i for i, ln in enumerate(lines) if ln.startswith("FROM ")) :]
    assert lines[0] == "FROM python:3.11-slim"
    assert any(ln.startswith("RUN pip install /tmp/wheels/tracesieve-") for ln in lines)
    user = next(ln.split()[1] for ln in lines if ln.startswith("USER "))
    assert not user.startswith(("root", "0"))
    expose = next(ln for ln in lines if ln.startswith("EXPOSE"))
    assert expose.split()[1:] == ["4317", "4318", "8888", "13133"]
    assert 'ENTRYPOINT ["tracesieve", "run"]' in lines
    cmd = [ln for ln in lines if ln.startswith("CMD ")][-1]  # not HEALTHCHECK's
    config = cmd.split('"')[3]  # CMD ["--config", "/app/configs/x.yaml"]
    assert (ROOT / config.removeprefix("/app/")).exists()


def test_readme_tour_describes_what_make_run_runs():
    """The README's five-minute tour quotes `make run`: the config it names, the quiet
    times it gives for a trace's release, and where the spans land are the shipped ones."""
    readme = (ROOT / "README.md").read_text()
    make = (ROOT / "Makefile").read_text()
    assert "CONFIG ?= configs/local.yaml" in make and "configs/local.yaml" in readme
    config = yaml.safe_load((ROOT / "configs/local.yaml").read_text())
    grouping = config["processors"]["groupbytrace"]
    assert (grouping["wait_duration"], grouping["wait_duration_after_root"]) == ("2s", "200ms")
    assert "quiet for 200 ms after its root span arrived (2 s" in readme
    assert config["exporters"]["file"]["path"].endswith(":-data/spans.jsonl}")
    assert "data/spans.jsonl" in readme
    policies = config["processors"]["tail_sampling"]["policies"]
    assert [p["type"] for p in policies] == ["always_sample"]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'tracesieve-loadgen = "benchmarks.loadgen:main"' in pyproject
