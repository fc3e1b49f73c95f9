"""The live view's pages ship in the package: `pip install .` (not editable, as the
Dockerfile installs tracesieve) puts them beside the code, and the installed copy serves
them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
STATIC = ROOT / "pipeline" / "exporters" / "live_view" / "static"

SERVE = """
import asyncio, urllib.request
import pipeline
from pipeline.configtypes import decode
from pipeline.exporters.live_view import LiveViewConfig, LiveViewExporter
from pipeline.testing import FakeHost, settings

async def main():
    cfg, errs = decode({"endpoint": "127.0.0.1:0"}, LiveViewConfig, "live_view")
    view = LiveViewExporter(settings("exporter", "live_view"), cfg)
    await view.start(FakeHost())
    try:
        for path in ("", "trace/" + "ab" * 16, "static/list.js", "static/trace.js",
                     "static/common.js", "static/view.css", "static/favicon.svg"):
            def get():
                with urllib.request.urlopen(view.url + path, timeout=10) as r:
                    return r.status, len(r.read())
            status, size = await asyncio.to_thread(get)
            print(path or "/", status, size)
    finally:
        await view.shutdown()
    print("from", pipeline.__file__)

asyncio.run(main())
"""


def test_pip_install_ships_and_serves_the_pages(tmp_path):
    src = tmp_path / "src"
    skip = shutil.ignore_patterns("*.so", "__pycache__", ".venv", "build", "*.egg-info")
    for name in ("pipeline", "processors", "benchmarks"):
        shutil.copytree(ROOT / name, src / name, ignore=skip)
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    site = tmp_path / "site"
    # not editable, with the build isolation `pip install .` uses (no mypyc: faster, and
    # which files are shipped does not depend on it)
    env = {**os.environ, "TRACESIEVE_PURE_PYTHON": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(site),
            str(src),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    shipped = site / "pipeline" / "exporters" / "live_view" / "static"
    assert sorted(p.name for p in shipped.iterdir()) == sorted(p.name for p in STATIC.iterdir())
    for p in STATIC.iterdir():
        assert (shipped / p.name).read_bytes() == p.read_bytes()
    # the installed copy (not this checkout) serves them
    run = subprocess.run(
        [sys.executable, "-c", SERVE],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(site)},
        cwd=tmp_path,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert lines[-1] == f"from {site / 'pipeline' / '__init__.py'}"
    for line in lines[:-1]:
        _path, status, size = line.split()
        assert status == "200" and int(size) > 0, line
    assert len(lines) == 8
