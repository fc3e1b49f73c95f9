"""memory_limiter: refuses (retryably) above the soft limit, passes data through below it;
its config follows the OTel Collector's rules."""

from __future__ import annotations

import pytest

from pipeline.configtypes import decode
from pipeline.errors import RefusedError
from pipeline.testing import FakeHost, Sink, make_span, make_traces, settings
from processors.memory_limiter import MemoryLimiter, MemoryLimiterConfig, rss_bytes

MIB = 1 << 20


def limiter(sink: Sink, **cfg: object) -> MemoryLimiter:
    config, errors = decode(cfg, MemoryLimiterConfig, "processors::memory_limiter")
    assert not errors and config is not None
    return MemoryLimiter(settings("processor", "memory_limiter"), config, sink)


def traces():  # type: ignore[no-untyped-def]
    return make_traces([make_span("a", b"\1" * 16, b"\2" * 8)])


async def test_passes_data_below_the_limit():
    sink = Sink()
    m = limiter(sink, check_interval="1s", limit_mib=100_000)
    await m.start(FakeHost())
    await m.consume_traces(traces())
    await m.shutdown()
    assert sink.span_count == 1 and not m.refusing


async def test_refuses_above_the_soft_limit_with_a_retry_hint():
    sink = Sink()
    # a soft limit of 7 MiB: far below what this process uses even after collecting
    assert rss_bytes() > 20 * MIB
    m = limiter(sink, check_interval="250ms", limit_mib=8, spike_limit_mib=1)
    await m.start(FakeHost())
    assert m.refusing
    with pytest.raises(RefusedError) as exc:
        await m.consume_traces(traces())
    assert "high memory usage" in str(exc.value) and exc.value.retry_after == 0.25
    await m.shutdown()
    assert sink.span_count == 0


@pytest.mark.parametrize(
    ("cfg", "problem"),
    [
        ({"limit_mib": 100}, "check_interval: must be greater than zero"),
        ({"check_interval": "1s"}, "limit_mib: set limit_mib or limit_percentage"),
        (
            {"check_interval": "1s", "limit_mib": 100, "spike_limit_mib": 100},
            "spike_limit_mib: must be smaller than limit_mib",
        ),
    ],
)
def test_config_rules(cfg, problem):
    _, errors = decode(cfg, MemoryLimiterConfig, "processors::memory_limiter")
    assert f"processors::memory_limiter::{problem}" in errors


def test_default_spike_is_a_fifth_of_the_limit():
    config, _ = decode({"check_interval": "1s", "limit_mib": 1000}, MemoryLimiterConfig, "m")
    assert config is not None
    assert config.limits() == (1000 * MIB, 800 * MIB)
