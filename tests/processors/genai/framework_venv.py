"""A framework's own virtualenv, for an agent app whose framework pins clash with the test
extra's (LlamaIndex's OpenAI integration wants `openai<3`): built once from a pinned
requirements file in `tests/processors/genai/apps/`, cached between runs.

The cache: `$TRACESIEVE_TEST_VENVS` (default `~/.cache/tracesieve-test-venvs`), one
directory per framework named after the hash of its requirements file and of this Python's
version (`llamaindex-<12 hex>`); a `.complete` file marks a finished build. A file lock
serialises concurrent builders (two test runs at once build it once).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time

APPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps")


def cache_root() -> str:
    return os.environ.get("TRACESIEVE_TEST_VENVS") or os.path.join(
        os.path.expanduser("~"), ".cache", "tracesieve-test-venvs"
    )


def venv_python(name: str) -> tuple[str, float]:
    """The Python of framework `name`'s venv (built from `apps/requirements-<name>.txt` if
    not cached), and the seconds spent building it (0 when it was cached)."""
    req = os.path.join(APPS, f"requirements-{name}.txt")
    with open(req, "rb") as fh:
        digest = hashlib.sha256(fh.read() + sys.version.encode()).hexdigest()[:12]
    root = cache_root()
    os.makedirs(root, exist_ok=True)
    venv = os.path.join(root, f"{name}-{digest}")
    python = os.path.join(venv, "bin", "python")
    done = os.path.join(venv, ".complete")
    if os.path.exists(done):
        return python, 0.0
    with open(os.path.join(root, f"{name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(done):  # built by another run while this one waited
            return python, 0.0
        t0 = time.monotonic()
        shutil.rmtree(venv, ignore_errors=True)  # a build that was interrupted
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        pip = subprocess.run(
            [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", req],
            capture_output=True,
            text=True,
        )
        if pip.returncode != 0:
            raise RuntimeError(f"building the {name} venv failed:\n{pip.stderr[-4000:]}")
        with open(done, "w") as fh:
            fh.write(req + "\n")
        return python, time.monotonic() - t0
