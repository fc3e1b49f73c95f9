"""Every file in testdata/bad_configs is an invalid configuration. Through the CLI's entry
point (`tracesieve run --config FILE`), each must exit with status 2 and print every error
line its `# expect:` comments list (each starts with the path of the problem), and no
traceback; a few also go through the command in a subprocess. A new bad config is a new
file; nothing else to edit."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

from pipeline import cli

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "testdata", "bad_configs")
FILES = sorted(f for f in os.listdir(HERE) if f.endswith(".yaml"))


def expectations(name: str) -> list[str]:
    with open(os.path.join(HERE, name)) as fh:
        return [
            line.split("# expect:", 1)[1].strip()
            for line in fh
            if line.lstrip().startswith("# expect:")
        ]


def run(name: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TS_BAD_CONFIG")}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "--config", name],
        capture_output=True,
        text=True,
        cwd=HERE,  # relative paths in the files resolve here
        env=env,
        timeout=60,
    )


@dataclass
class Outcome:
    code: int
    out: str
    err: str


def run_in_process(name: str, capsys: pytest.CaptureFixture[str], monkeypatch) -> Outcome:  # type: ignore[no-untyped-def]
    """The CLI's entry point in this process: the same code path as the command, without
    a process start per file (an uncaught exception would fail the test)."""
    monkeypatch.chdir(HERE)
    for k in list(os.environ):
        if k.startswith("TS_BAD_CONFIG"):
            monkeypatch.delenv(k)
    code = cli.main(["run", "--config", name])
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


def test_the_table_is_not_empty():
    assert len(FILES) >= 20
    for name in FILES:
        assert expectations(name), f"{name} has no '# expect:' line"


def check(name: str, r: Outcome) -> None:
    out = r.out + r.err
    assert r.code == 2, out
    assert "Traceback" not in out
    assert "tracesieve is ready" not in out
    lines = [ln.strip() for ln in r.err.splitlines()]
    for expected in expectations(name):
        assert any(expected in ln for ln in lines), f"missing {expected!r} in:\n{r.err}"


@pytest.mark.parametrize("name", FILES)
def test_bad_config_exits_2_with_every_error_and_its_path(name, capsys, monkeypatch):
    check(name, run_in_process(name, capsys, monkeypatch))


@pytest.mark.parametrize("name", ["unknown_field.yaml", "tls_bad_pem.yaml", "yaml_syntax.yaml"])
def test_the_command_itself(name):
    """A few through `python -m pipeline run` in a subprocess, as a user runs it."""
    r = run(name)
    check(name, Outcome(r.returncode, r.stdout, r.stderr))
