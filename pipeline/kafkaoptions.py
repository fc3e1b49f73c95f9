"""Kafka options of the OTel Collector's that aiokafka has no setting for: the exporter's
`record_partitioner`, the consumer's `group_rebalance_strategies`, and
`resolve_canonical_bootstrap_servers_only`.

`record_partitioner` (the Collector's franz-go strategies), as aiokafka partitioner
functions `(key, all_partitions, available) -> partition`:

- `sticky_key` (the default), `hasher: sarama_compat` (the default: FNV-1a 32, Sarama's
  hash partitioner) or `murmur2` (the Java client's): a keyed record always lands on
  the same partition; records without a key stick to one partition for a short while
  (`STICKY_SECONDS`) and then move on, spreading load as franz-go's sticky partitioner
  does batch by batch;
- `sticky`: every record sticks the same way, keyed or not;
- `round_robin`: each record to the next available partition;
- `least_backup`: aiokafka does not expose how many records wait per partition, so
  records are spread round robin over the available partitions.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable, Sequence

from pipeline.component import ComponentID, Host
from pipeline.kafkaclient import AuthConfig, murmur2

BALANCERS = ("range", "roundrobin", "sticky", "cooperative-sticky")

Partitioner = Callable[[bytes | None, Sequence[int], Sequence[int]], int]
STICKY_SECONDS = 0.05


def fnv1a32(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def sarama_partition(key: bytes, n: int) -> int:
    """Sarama's hash partitioner (franz-go's SaramaCompatHasher): int32(fnv1a) % n,
    made non-negative."""
    v = fnv1a32(key)
    if v >= 1 << 31:
        v -= 1 << 32
    return abs(v) % n


def murmur2_partition(key: bytes, n: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % n


class _Sticky:
    """One partition for a while, then another (random among the available)."""

    def __init__(self) -> None:
        self._partition: int | None = None
        self._until = 0.0

    def __call__(self, all_partitions: Sequence[int], available: Sequence[int]) -> int:
        now = time.monotonic()
        choices = available or all_partitions
        current = self._partition
        if current is None or current not in choices or now >= self._until:
            current = self._partition = random.choice(choices)
            self._until = now + STICKY_SECONDS
        return current


def make(strategy: str, hasher: str = "sarama_compat") -> Partitioner:
    if strategy in ("round_robin", "least_backup"):
        counter = itertools.count()

        def round_robin(key: bytes | None, all_p: Sequence[int], avail: Sequence[int]) -> int:
            choices = avail or all_p
            return choices[next(counter) % len(choices)]

        return round_robin
    sticky = _Sticky()
    if strategy == "sticky":
        return lambda key, all_p, avail: sticky(all_p, avail)
    by_key = sarama_partition if hasher == "sarama_compat" else murmur2_partition

    def sticky_key(key: bytes | None, all_p: Sequence[int], avail: Sequence[int]) -> int:
        if key is None:
            return sticky(all_p, avail)
        return all_p[by_key(key, len(all_p))]

    return sticky_key


def assignors(strategies: Sequence[str]) -> tuple[type, ...]:
    """aiokafka assignors for the Collector's `group_rebalance_strategies`, in order.
    aiokafka rebalances eagerly only: `cooperative-sticky` (franz-go's default) is served
    by the (eager) sticky assignor."""
    from aiokafka.coordinator.assignors.range import RangePartitionAssignor
    from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from aiokafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor

    table: dict[str, type] = {
        "range": RangePartitionAssignor,
        "roundrobin": RoundRobinPartitionAssignor,
        "sticky": StickyPartitionAssignor,
        "cooperative-sticky": StickyPartitionAssignor,
    }
    out: list[type] = []
    for s in strategies:
        a = table[s]
        if a not in out:
            out.append(a)
    return tuple(out)


def canonical_brokers(brokers: Sequence[str]) -> list[str]:
    """`resolve_canonical_bootstrap_servers_only`: each broker's host resolved to its
    addresses, each address looked up back to its canonical name (the Kafka client's
    client.dns.lookup = resolve_canonical_bootstrap_servers_only). Blocking (DNS)."""
    import socket

    out: list[str] = []
    for b in brokers:
        host, _, port = b.rpartition(":")
        try:
            infos = socket.getaddrinfo(host, int(port), proto=socket.IPPROTO_TCP)
        except (OSError, ValueError):
            out.append(b)
            continue
        for info in infos:
            addr = str(info[4][0])
            try:
                name = socket.gethostbyaddr(addr)[0]
            except OSError:
                name = addr
            entry = f"{name}:{port}"
            if entry not in out:
                out.append(entry)
    return out or list(brokers)


def token_provider(auth: AuthConfig | None, host: Host) -> object | None:
    """The SASL/OAUTHBEARER token provider named by `auth.sasl.oauthbearer_token_source`:
    an extension listed under `service::extensions` that gives tokens (`oauth2client`).
    OSError (the collector cannot start) when there is none."""
    sasl = auth.sasl if auth is not None else None
    if sasl is None or sasl.mechanism != "OAUTHBEARER" or not sasl.oauthbearer_token_source:
        return None
    name = sasl.oauthbearer_token_source
    ext = host.extension(ComponentID.parse(name))
    make = getattr(ext, "kafka_provider", None)
    if make is None:
        why = (
            "is not started (list it under service::extensions)"
            if ext is None
            else ("gives no tokens")
        )
        raise OSError(f"auth::sasl::oauthbearer_token_source: extension {name!r} {why}")
    provider: object = make()
    return provider
