"""The image ships what is tested (no container runtime here, so without one): the
Dockerfile's build stage makes a wheel with the native parts, from exactly the files it
copies, and the runtime stage, slim, installs that wheel.

`test_the_build_stage_wheel_holds_the_native_modules` builds that wheel (mypyc compiles
seven modules: about a minute of CPU), so it is marked `image` and runs in `make
test-image` (part of `.ci/run`), not in `make test`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import native

ROOT = Path(__file__).resolve().parents[1]


def stages() -> list[tuple[str, list[str]]]:
    """The Dockerfile's stages: (name or "", instructions), continuation lines joined and
    comments left out."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            m = re.match(r"FROM\s+\S+(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
            assert m is not None
            out.append((m.group(1) or "", [line]))
        else:
            assert out, "an instruction before FROM"
            out[-1][1].append(line)
    return out


def build_stage() -> list[str]:
    (instructions,) = [ins for name, ins in stages() if name == "build"]
    return instructions


def copies(instructions: list[str]) -> list[tuple[list[str], str]]:
    """The stage's `COPY src... dest` from the build context (not `--from`)."""
    out = []
    for ins in instructions:
        parts = ins.split()
        if parts[0].upper() != "COPY" or any(p.startswith("--from") for p in parts):
            continue
        args = [p for p in parts[1:] if not p.startswith("--")]
        out.append((args[:-1], args[-1]))
    return out


def _pattern(p: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go's filepath.Match, plus `**`) as a regex."""
    rx, i = "", 0
    while i < len(p):
        if p.startswith("**/", i):
            rx, i = rx + "(?:.*/)?", i + 3
        elif p.startswith("**", i):
            rx, i = rx + ".*", i + 2
        elif p[i] == "*":
            rx, i = rx + "[^/]*", i + 1
        elif p[i] == "?":
            rx, i = rx + "[^/]", i + 1
        else:
            rx, i = rx + re.escape(p[i]), i + 1
    return re.compile(rx)


def ignored() -> list[re.Pattern[str]]:
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    pats = [ln.strip("/") for ln in lines if ln and not ln.startswith("#")]
    assert not [p for p in pats if p.startswith("!")], "exceptions: not handled here"
    return [_pattern(p) for p in pats]


def _excluded(rel: str, pats: list[re.Pattern[str]]) -> bool:
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(p.fullmatch(x) for p in pats for x in prefixes)


def context_files(src: str, pats: list[re.Pattern[str]]) -> list[str]:
    """The files under `src` (relative to the repository) that the build context holds."""
    path = ROOT / src
    if path.is_file():
        return [] if _excluded(src, pats) else [src]
    out = []
    for dirpath, dirnames, filenames in os.walk(path):
        rel_dir = os.path.relpath(dirpath, ROOT)
        dirnames[:] = [d for d in dirnames if not _excluded(f"{rel_dir}/{d}", pats)]
        out += [f"{rel_dir}/{f}" for f in filenames if not _excluded(f"{rel_dir}/{f}", pats)]
    return sorted(out)


def lay_out(into: Path) -> list[str]:
    """Copy what the build stage's COPY lines copy, where they put it (relative to its
    WORKDIR); the files copied, as the stage sees them."""
    pats = ignored()
    laid: list[str] = []
    for sources, dest in copies(build_stage()):
        for src in sources:
            for rel in context_files(src, pats):
                if (ROOT / src).is_dir():  # COPY dir dest: the directory's contents
                    target = Path(dest) / os.path.relpath(rel, src)
                else:
                    target = Path(dest) / os.path.basename(rel)
                (into / target).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / rel, into / target)
                laid.append(os.path.normpath(target))
    return laid


def test_the_dockerignore_patterns_match_as_docker_does():
    pats = [_pattern(p) for p in ("**/__pycache__", "build", "*.egg-info", "**/*.so")]
    assert _excluded("pipeline/__pycache__/x.pyc", pats)
    assert _excluded("build/lib/x.py", pats) and not _excluded("pipeline/build.py", pats)
    assert _excluded("tracesieve.egg-info/PKG-INFO", pats)
    assert _excluded("pipeline/_wirescan.cpython-311-x86_64-linux-gnu.so", pats)
    assert not _excluded("pipeline/_wirescan.c", pats)


def test_the_build_context_leaves_out_local_builds(tmp_path):
    laid = lay_out(tmp_path)
    assert "setup.py" in laid and "pyproject.toml" in laid
    assert "pipeline/_wirescan.c" in laid and "pipeline/_jsonwire.c" in laid
    assert not [f for f in laid if f.endswith(".so") or "__pycache__" in f], laid


def test_the_runtime_stage_is_slim_and_installs_the_built_wheel():
    (_, build), (runtime_name, runtime) = stages()
    assert build[0] == "FROM python:3.11-slim AS build" and runtime_name == ""
    assert runtime[0] == "FROM python:3.11-slim"
    assert any("gcc" in ins for ins in build if ins.startswith("RUN"))
    assert not any("gcc" in ins or "apt-get" in ins for ins in runtime), "a compiler at run time"
    run_build = " ".join(ins for ins in build if ins.startswith("RUN"))
    assert "pip wheel --no-deps --wheel-dir /wheels ." in run_build
    assert "python -m pipeline.native --check-wheel /wheels/" in run_build
    assert "COPY --from=build /wheels /tmp/wheels" in runtime
    run = " ".join(ins for ins in runtime if ins.startswith("RUN"))
    assert "pip install /tmp/wheels/tracesieve-" in run and "pip install ." not in run


def test_check_wheel_says_what_is_missing(tmp_path, capsys):
    import zipfile

    wheel = tmp_path / "tracesieve-0.1.0-cp311-cp311-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("pipeline/wirescan.py", "")
        z.writestr("pipeline/_wirescan.cpython-311-x86_64-linux-gnu.so", "")
    assert native.main(["--check-wheel", str(wheel)]) == 1
    err = capsys.readouterr().err
    assert "tracesieve_native__mypyc" in err and "pipeline/_wirescan," not in err


@pytest.mark.image
@pytest.mark.timeout(600)
def test_the_build_stage_wheel_holds_the_native_modules(tmp_path):
    """What `docker build` does in the build stage, here: the wheel, built (with pip's
    build isolation, as there) from the files the COPY lines copy, holds the C scanner and
    every mypyc-compiled module, and the Dockerfile's own check passes on it."""
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler here (the image's build stage has one)")
    src = tmp_path / "src"
    lay_out(src)
    env = {k: v for k, v in os.environ.items() if k != native.PURE_PYTHON_ENV}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--wheel-dir",
            str(tmp_path / "w"),
            ".",
        ],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        timeout=590,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (wheel,) = (tmp_path / "w").glob("tracesieve-*.whl")
    assert native.missing_from_wheel(str(wheel)) == []
    check = subprocess.run(
        [sys.executable, "-m", "pipeline.native", "--check-wheel", str(wheel)],
        cwd=src,
        env={**env, "PYTHONPATH": str(src)},
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
