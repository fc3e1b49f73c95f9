"""Summaries of py-spy profiles: the functions with the largest share of samples.

    python -m benchmarks.profiles benchmarks/results/profiles/agent_pipeline.txt

Reads py-spy's `--format raw` output (collapsed stacks: `frame;frame;...;frame count`,
outermost frame first) and prints, per function (`name (file)`, line numbers merged):
`self` — the share of samples in which it was the innermost frame (where the time is
spent), `python` — the same for the innermost Python frame (with `--native` stacks, the
Python function that was running whatever C code was on top), and `total` — the share in
which it was anywhere on the stack (itself and what it calls), for Python functions and,
with `--native` stacks, for C functions (e.g. `gc_collect_main`: the cyclic GC); frames on
(nearly) every stack are left out of `total`, and so are C frames that call Python code
(the event loop's, the interpreter's: where Python was called from, not where time goes).
Shares are of the samples py-spy took, less those of threads waiting in the kernel (`IDLE`).
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from typing import Any

_LINE = re.compile(r":\d+\)$")
# innermost C frames of a thread that waits (with --native, py-spy samples those too)
IDLE = (
    "epoll_wait",
    "epoll_pwait",
    "poll",
    "select",
    "__futex",
    "futex",
    "pthread_cond",
    "sem_wait",
    "nanosleep",
)
_SITE = re.compile(r".*/(?:site|dist)-packages/")


def _function(frame: str) -> str:
    """`consume (processors/batch.py:81)` -> `consume (processors/batch.py)`, shortened."""
    frame = _LINE.sub(")", frame.strip())
    name, _, where = frame.partition(" (")
    if where:
        where = _SITE.sub("", where)
        where = re.sub(r".*/(pipeline|processors|benchmarks)/", r"\1/", where)
        return f"{name} ({where}"
    return name


def summarize(path: str) -> dict[str, Any]:
    self_: Counter[str] = Counter()
    py: Counter[str] = Counter()
    total: Counter[str] = Counter()
    plumbing: set[str] = set()
    samples = idle = 0
    with open(path) as fh:
        for line in fh:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            frames = [_function(f) for f in stack.split(";") if f]
            if not frames:
                continue
            if frames[-1].split(" (")[0].startswith(IDLE):
                idle += n
                continue
            samples += n
            self_[frames[-1]] += n
            last_py = max((i for i, f in enumerate(frames) if ".py" in f), default=-1)
            py[frames[last_py]] += n
            for f in set(frames):
                total[f] += n
            # native frames that run Python code (the event loop's, the interpreter's) say
            # where Python was called from, not where time goes: left out of `total_native`
            plumbing.update(f for f in frames[:last_py] if ".py" not in f)

    def share(c: Counter[str], k: int) -> list[list[Any]]:
        return [[f, round(100 * n / samples, 1)] for f, n in c.most_common(k)] if samples else []

    # frames on (nearly) every stack (the event loop, the entry point) say nothing
    always = {f for f, n in total.items() if n >= 0.95 * samples}
    total_py = Counter({f: n for f, n in total.items() if ".py" in f and f not in always})
    total_c = Counter(
        {
            f: n
            for f, n in total.items()
            if ".py" not in f and f not in always | plumbing and not f.startswith("0x")  # named
        }
    )
    return {
        "samples": samples,
        "idle_samples": idle,
        "self": share(self_, 25),
        "python": share(py, 25),
        "total": share(total_py, 30),
        "total_native": share(total_c, 20),
    }


def render(top: dict[str, Any]) -> str:
    head = f"{top['samples']} samples"
    if top.get("idle_samples"):
        head += f" (and {top['idle_samples']} of threads waiting in the kernel, left out)"
    out = [
        head,
        "",
        "self %  function (innermost frame: where time is spent)",
    ]
    out += [f"{pct:6.1f}  {f}" for f, pct in top["self"]]
    if top.get("python") and top["python"] != top["self"]:
        out += ["", "self %  Python function (innermost Python frame, C frames below it folded in)"]
        out += [f"{pct:6.1f}  {f}" for f, pct in top["python"]]
    out += ["", "total %  Python function (anywhere on the stack: itself and its callees)"]
    out += [f"{pct:7.1f}  {f}" for f, pct in top["total"]]
    if top.get("total_native"):
        out += ["", "total %  native function (anywhere on the stack; with --native)"]
        out += [f"{pct:7.1f}  {f}" for f, pct in top["total_native"]]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    for path in args:
        sys.stdout.write(render(summarize(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
