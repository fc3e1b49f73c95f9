"""The command line as a shell user meets it: pipes that close early, output to devices."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_print_config_into_a_pipe_closed_early_exits_quietly():
    # `tracesieve print-config ... | head -1`: the reader is gone before the writer is done
    p = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "print-config", "--config", "configs/gateway.yaml"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "TRACESIEVE_KAFKA_BROKERS": "127.0.0.1:9"},
    )
    assert p.stdout is not None and p.stderr is not None
    p.stdout.close()  # nothing will read what it prints
    with p.stderr:
        err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_the_file_exporter_writes_to_a_device(tmp_path, collector_factory):
    # /dev/null cannot be fsynced: shutdown still flushes, closes and exits 0
    c = collector_factory(
        {
            "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
            "exporters": {"file": {"path": "/dev/null"}},
            "service": {
                "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["file"]}},
                "telemetry": {"metrics": {"level": "none"}},
            },
        }
    )
    assert c.stop() == 0, c.output
    assert "Traceback" not in c.output
