"""`memory_limiter` processor: refuses data while the process uses too much memory, so
clients back off (UNAVAILABLE / 503) instead of the collector running out of memory.

Every `check_interval` it reads the resident set size. Above the soft limit
(`limit_mib - spike_limit_mib`) it refuses new data and collects garbage; it accepts
again once usage is below the soft limit. Put it first in the pipeline.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import os

import msgspec

from pipeline.component import Host, ProcessorFactory, Settings, TracesConsumer
from pipeline.configtypes import Config, Duration, NonNegInt, Percentage
from pipeline.errors import RefusedError
from pipeline.pdata import Traces
from pipeline.processorhelper import ProcessorBase

_PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 1 << 20


def rss_bytes() -> int:
    with open("/proc/self/statm", "rb") as fh:
        return int(fh.read().split()[1]) * _PAGE


def total_memory() -> int:
    try:
        with open("/sys/fs/cgroup/memory.max") as fh:
            v = fh.read().strip()
            if v != "max":
                return int(v)
    except OSError:
        pass
    return os.sysconf("SC_PHYS_PAGES") * _PAGE


def _malloc_trim() -> None:
    """Give freed heap back to the OS (glibc), so RSS can fall after a collection."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


class MemoryLimiterConfig(Config):
    check_interval: Duration = msgspec.field(default_factory=lambda: Duration(0.0))
    limit_mib: NonNegInt = 0
    spike_limit_mib: NonNegInt = 0  # 0: 20% of the limit
    limit_percentage: Percentage = 0
    spike_limit_percentage: Percentage = 0

    def validate(self) -> list[str]:
        errs = []
        if self.check_interval.seconds <= 0:
            errs.append("check_interval: must be greater than zero")
        if not self.limit_mib and not self.limit_percentage:
            errs.append("limit_mib: set limit_mib or limit_percentage")
        if self.limit_mib and self.spike_limit_mib >= self.limit_mib:
            errs.append("spike_limit_mib: must be smaller than limit_mib")
        return errs

    def limits(self) -> tuple[int, int]:
        """(hard, soft) limits in bytes."""
        if self.limit_mib:
            hard = self.limit_mib * MIB
            spike = self.spike_limit_mib * MIB if self.spike_limit_mib else hard // 5
        else:
            total = total_memory()
            hard = int(total * self.limit_percentage / 100)
            spike = int(total * (self.spike_limit_percentage or self.limit_percentage / 5) / 100)
        return hard, hard - spike


class MemoryLimiter(ProcessorBase):
    """Stateful: a background task checks the memory used."""

    def __init__(
        self, settings: Settings, cfg: MemoryLimiterConfig, next_consumer: TracesConsumer
    ) -> None:
        super().__init__(settings, next_consumer)
        self.cfg = cfg
        self._refused = self.counter(
            "otelcol_processor_memory_limiter_refused_spans",
            "Spans refused because memory was above the soft limit",
        )
        self._usage = settings.telemetry.gauge(
            "tracesieve_process_memory_rss_bytes", "Resident set size at the last check"
        )
        self.hard, self.soft = cfg.limits()
        self.refusing = False

    async def _start(self, host: Host) -> None:
        self.check()
        self.spawn(self._loop(), "check")

    def check(self) -> None:
        used = rss_bytes()
        if used >= self.soft:
            gc.collect()
            _malloc_trim()
            used = rss_bytes()
        self._usage.set(used)
        was = self.refusing
        self.refusing = used >= self.soft
        if self.refusing != was:
            if self.refusing:
                self.log.warning(
                    "memory usage %d MiB is above the soft limit %d MiB: refusing data",
                    used // MIB,
                    self.soft // MIB,
                )
            else:
                self.log.info(
                    "memory usage %d MiB is below the soft limit again: accepting data", used // MIB
                )

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.check_interval.seconds)
            self.check()

    async def consume_traces(self, traces: Traces) -> None:
        n = traces.span_count
        self.metrics.incoming.inc(n)
        if self.refusing:
            self._refused.inc(n)
            raise RefusedError(
                "data refused due to high memory usage",
                retry_after=self.cfg.check_interval.seconds or 1.0,
            )
        self.metrics.outgoing.inc(n)
        await self._next.consume_traces(traces)


factory = ProcessorFactory(
    type="memory_limiter",
    config_type=MemoryLimiterConfig,
    create=MemoryLimiter,
    stability="beta",
    description="refuses data while memory use is above a limit",
)
