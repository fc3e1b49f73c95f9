"""Machine pauses: stretches in which a CPU ran nothing of ours, seen by an idle probe.

A VM's host can stop the guest's virtual CPUs. On this machine (2026-12-06) both stopped
together for 20-270 ms several times a minute with nothing running; that is counted
neither as steal (`/proc/stat`) nor as run-queue wait (schedstat), and every latency
measured across it carries it. A probe process pinned to each CPU sleeps `interval` in a
loop and reports every wake-up that came more than `threshold` late: when the pause began
and how long it lasted, on CLOCK_MONOTONIC (`time.monotonic`, shared by all processes).
A sleeper wakes within a few ms on a CPU busy with other tasks (the scheduler favours
it), so a late wake-up past the threshold means that the CPU itself did not run.

    python -m benchmarks.pauses --cpu 0 [--interval 0.002] [--threshold 0.01]

prints one line per pause: ``<start> <seconds>``. `Probes` runs one per CPU for a case.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import threading
import time
from types import TracebackType
from typing import Any

INTERVAL = 0.002  # seconds slept between looks
THRESHOLD = 0.010  # a wake-up this much later than due is a pause


def probe(interval: float, threshold: float) -> None:
    """Sleep in a loop; print each pause (start, seconds) as it ends."""
    limit = interval + threshold
    last = time.monotonic()
    while True:
        time.sleep(interval)
        now = time.monotonic()
        if now - last > limit:
            # the pause began after the sleep's due time at the latest
            print(f"{last + interval:.6f} {now - last - interval:.6f}", flush=True)
        last = now


Pause = tuple[float, float, int]
"""(start, seconds, cpu): one pause, on `time.monotonic`."""


class Probes:
    """A pause probe per CPU in `cpus`, from `start()` (or `with`) to `stop()`."""

    def __init__(
        self, cpus: list[int], interval: float = INTERVAL, threshold: float = THRESHOLD
    ) -> None:
        self.cpus = cpus
        self.interval = interval
        self.threshold = threshold
        self.pauses: list[Pause] = []
        self._procs: list[subprocess.Popen[str]] = []
        self._readers: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self) -> Probes:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        for cpu in self.cpus:
            cmd = [sys.executable, "-m", "benchmarks.pauses", "--cpu", str(cpu)]
            cmd += ["--interval", str(self.interval), "--threshold", str(self.threshold)]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=root)
            self._procs.append(proc)
            reader = threading.Thread(target=self._read, args=(proc, cpu), daemon=True)
            reader.start()
            self._readers.append(reader)
        return self

    def _read(self, proc: subprocess.Popen[str], cpu: int) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            t0, dt = line.split()
            with self._lock:
                self.pauses.append((float(t0), float(dt), cpu))

    def stop(self) -> None:
        for proc in self._procs:
            proc.terminate()
        for proc, reader in zip(self._procs, self._readers, strict=True):
            proc.wait(10)
            reader.join(10)  # at the end of the pipe, once the probe has ended
            if proc.stdout is not None:
                proc.stdout.close()
        self._procs.clear()
        self._readers.clear()

    def __enter__(self) -> Probes:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def within(self, t0: float, t1: float) -> list[Pause]:
        """Pauses that overlap [t0, t1] (reported once they have ended: ask after t1)."""
        with self._lock:
            return [p for p in self.pauses if p[0] < t1 and p[0] + p[1] > t0]

    def summary(self, t0: float, t1: float) -> dict[str, Any]:
        """The pauses within [t0, t1]: how many, the longest, and the time any probed CPU
        was paused (the union of the pauses, clipped to the window), in ms."""
        got = sorted(self.within(t0, t1))
        total = 0.0
        end = t0
        for start, dt, _ in got:
            a, b = max(start, end), min(start + dt, t1)
            if b > a:
                total += b - a
                end = b
        return {
            "count": len(got),
            "longest_ms": round(max((p[1] for p in got), default=0.0) * 1000, 1),
            "total_ms": round(total * 1000, 1),
        }


def add_threshold_argument(p: argparse.ArgumentParser, effect: str) -> None:
    """`--pause-threshold-ms` for a case that runs `Probes`; `effect`: what a pause does
    there (for the help)."""
    p.add_argument(
        "--pause-threshold-ms",
        type=float,
        default=THRESHOLD * 1000,
        help=f"a probe's wake-up this late is a machine pause ({effect})",
    )


def probes_for(cpus: list[int], args: argparse.Namespace) -> Probes:
    """`Probes` on `cpus` with the threshold of `add_threshold_argument`."""
    return Probes(cpus, threshold=args.pause_threshold_ms / 1000)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.pauses", description=__doc__)
    ap.add_argument("--cpu", type=int, default=None, help="pin to this CPU (default: none)")
    ap.add_argument("--interval", type=float, default=INTERVAL)
    ap.add_argument("--threshold", type=float, default=THRESHOLD)
    args = ap.parse_args(argv)
    if args.cpu is not None and (os.cpu_count() or 1) > args.cpu:
        os.sched_setaffinity(0, {args.cpu})
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        probe(args.interval, args.threshold)


if __name__ == "__main__":
    main()
