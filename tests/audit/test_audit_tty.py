"""On a terminal: a progress bar on stderr (what is read of the total, spans/s, time left)
and the report formatted on stdout; neither off a terminal, nor the bar with --quiet."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys

from tests.audit.helpers import ROOT, generated, requests_of, write_with_exporter


def _run_on_terminal(*args: str, stream: str) -> tuple[int, str, str]:
    """Run `tracesieve audit ARGS` with `stream` ("stdout" or "stderr") on a pseudo
    terminal; (exit status, what the terminal got, what the other stream got)."""
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120", "TERM": "xterm-256color"}
    kw = {"stdout": slave} if stream == "stdout" else {"stderr": slave}
    other = "stderr" if stream == "stdout" else "stdout"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "audit", *args],
        cwd=ROOT,
        env=env,
        **kw,
        **{other: subprocess.PIPE},
    )
    os.close(slave)
    got = bytearray()
    while True:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed its end
                break
            if not chunk:
                break
            got += chunk
        elif proc.poll() is not None:
            break
    pipe = getattr(proc, other)
    rest = pipe.read().decode()
    pipe.close()
    code = proc.wait(timeout=120)
    os.close(master)
    return code, got.decode(errors="replace"), rest


def test_progress_and_formatted_tables_on_a_terminal(tmp_path):
    dump = write_with_exporter(tmp_path / "d.jsonl", requests_of(generated(150, seed=51)), "json")
    code, err, out = _run_on_terminal(str(dump), "--workers", "2", stream="stderr")
    assert code == 0
    assert "reading" in err and "auditing" in err  # the phases, as the bar shows them
    assert "\x1b[" in err  # drawn in place
    assert "\x1b[" not in out  # stdout is a pipe: plain tables
    code, term_out, _ = _run_on_terminal(str(dump), "--quiet", stream="stdout")
    assert code == 0
    assert "\x1b[" in term_out and "╭" in term_out  # formatted, rounded boxes
    code, term_err, _ = _run_on_terminal(str(dump), "--quiet", stream="stderr")
    assert code == 0
    assert "reading" not in term_err  # --quiet: no bar
