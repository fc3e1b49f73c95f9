"""`kafka` receiver: OTLP messages from Kafka topics into the pipeline, at least once.

Delivery semantics:

- The records of one partition returned by one fetch form a *chunk*. A chunk goes down
  the pipeline as one batch carrying a `pipeline.pdata.Delivery`; it is *done* when the
  pipeline has taken it and every stage that kept it (batch, groupbytrace, an exporter's
  sending queue) has released it: exported, or dropped by design.
- Per partition, the offset committed (every `autocommit.interval`, on revocation and on
  shutdown) is the end of the longest run of done chunks from the oldest one. A crash
  replays from there: duplicates are possible, losses are not.
- The pipeline refusing a chunk (`RefusedError`: memory limit, full queue) pauses that
  partition and offers the same chunk again after `error_backoff`; fetching resumes
  once it is taken. A chunk that a downstream stage gives up on later (e.g. an exporter
  out of retries) is offered again the same way, unless `message_marking.on_error`.
  A permanent error skips it (`message_marking.on_permanent_error`, default true).
- A message that does not decode is counted (`otelcol_kafka_receiver_unmarshal_failed_spans`),
  logged (rate-limited) with its topic/partition/offset, optionally copied to
  `dead_letter_topic`, and skipped; it never stalls its partition.
- On a rebalance, revoked partitions stop being processed and what is done is committed;
  what they still had in flight is replayed by their new owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
from collections import deque
from collections.abc import Sequence
from typing import Any, Literal

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline import kafkaclient, kafkaoptions, otlpjson
from pipeline.component import Host, ReceiverFactory, Settings, TracesConsumer
from pipeline.configtypes import (
    Config,
    Duration,
    PositiveInt,
    RetryConfig,
    TLSClientConfig,
)
from pipeline.errors import InvalidDataError, PermanentError, RefusedError
from pipeline.exporters.helper import Backoff
from pipeline.kafkaclient import AuthConfig, ClientMetadataConfig
from pipeline.kafkaoptions import token_provider
from pipeline.pdata import Delivery, InvalidTracesError, Traces, count_spans
from pipeline.telemetry import RateLimitedLog

Encoding = Literal["otlp_proto", "otlp_json"]
DEFAULT_TOPIC = "otlp_spans"
ENCODINGS = ("otlp_proto", "otlp_json")


def check_encoding(value: str | None, field: str = "encoding") -> list[str]:
    if value is None or value in ENCODINGS:
        return []
    if value.startswith(("jaeger_", "zipkin_")):
        return [
            f"{field}: {value!r} is not supported: tracesieve reads OTLP (otlp_proto, otlp_json)"
        ]
    return [
        f"{field}: {value!r} is not a built-in encoding (otlp_proto, otlp_json), so the "
        "Collector reads it as an encoding extension, which tracesieve does not have"
    ]


def check_topics(name: str, topics: list[str], exclude: list[str]) -> list[str]:
    """The Collector's checks of `<signal>.exclude_topics`."""
    errs: list[str] = []
    if not exclude:
        return errs
    if any(e == "" for e in exclude):
        errs.append(f"{name}::exclude_topics: {name}.exclude_topics contains empty string")
    if not any(t.startswith("^") for t in topics):
        errs.append(
            f"{name}::exclude_topics: {name}.exclude_topics is configured but none of the "
            f"configured {name}.topics use regex pattern (must start with '^')"
        )
    for e in exclude:
        try:
            re.compile(e)
        except re.error as exc:
            errs.append(
                f"{name}::exclude_topics: {name}.exclude_topic contains invalid regex pattern "
                f"{e!r}: {exc}"
            )
    return errs


class SignalConfig(Config):
    """The OTel Collector's per-signal block: `topics` (a list; `^regex` allowed, with
    `exclude_topics`) or the older singular `topic`, and `encoding`."""

    topics: list[str] | None = None
    topic: str | None = None
    exclude_topics: list[str] = []
    encoding: str | None = None

    def validate(self) -> list[str]:
        if self.topics is not None and self.topic is not None:
            return ["topic: set either topic or topics, not both"]
        return []


class AutocommitConfig(Config):
    enable: bool = True
    interval: Duration = msgspec.field(default_factory=lambda: Duration(1.0))


class MessageMarkingConfig(Config):
    after: bool = True  # mark after the pipeline is done with a message (only mode)
    on_error: bool = False  # mark data a downstream stage gave up on (else: offer again)
    on_permanent_error: bool = True  # mark data refused permanently (else: offer again)

    def validate(self) -> list[str]:
        if not self.after:
            return ["after: only `after: true` (at-least-once) is supported"]
        return []


class ErrorBackoffConfig(RetryConfig):
    """How long to wait before offering refused data again (exponential, with jitter).
    `max_elapsed_time` 0: never give up (the data stays in Kafka meanwhile)."""

    initial_interval: Duration = msgspec.field(default_factory=lambda: Duration(0.1))
    max_interval: Duration = msgspec.field(default_factory=lambda: Duration(5.0))
    max_elapsed_time: Duration = msgspec.field(default_factory=lambda: Duration(0.0))


class HeaderExtractionConfig(Config):
    """Record headers copied onto every resource of the record's spans, as resource
    attributes `kafka.header.<name>` (the Collector's)."""

    extract_headers: bool = False
    headers: list[str] = []


class PartitionProcessingConfig(Config):
    """The Collector's `partition_processing`. tracesieve always works partitions apart
    (one chunk of a partition in the pipeline at a time, several partitions at once), so
    `independent` is accepted with its checks; `max_buffered_batches` bounds nothing more
    here (see docs/compatibility.md)."""

    independent: bool = False
    max_buffered_batches: int = 1

    def validate(self) -> list[str]:
        if self.max_buffered_batches <= 0:
            return [
                "max_buffered_batches: partition_processing.max_buffered_batches must be "
                "greater than zero"
            ]
        return []


class KafkaReceiverConfig(Config):
    brokers: list[str] = msgspec.field(default_factory=lambda: list(kafkaclient.DEFAULT_BROKERS))
    client_id: str = kafkaclient.DEFAULT_CLIENT_ID
    group_id: str = "otel-collector"
    group_instance_id: str = ""  # accepted; aiokafka has no static group membership
    group_rebalance_strategy: str | None = None  # the older, single form
    group_rebalance_strategies: list[str] = []  # empty: cooperative-sticky (franz-go's)
    protocol_version: str = ""  # "" = negotiate
    resolve_canonical_bootstrap_servers_only: bool = False
    conn_idle_timeout: Duration = msgspec.field(default_factory=lambda: Duration(540.0))
    metadata: ClientMetadataConfig = msgspec.field(default_factory=ClientMetadataConfig)
    topics: list[str] = msgspec.field(default_factory=lambda: [DEFAULT_TOPIC])
    topic: str | None = None  # the older single-topic form
    traces: SignalConfig | None = None
    logs: SignalConfig | None = None
    metrics: SignalConfig | None = None
    profiles: SignalConfig | None = None
    encoding: str = "otlp_proto"
    initial_offset: Literal["latest", "earliest"] = "latest"
    session_timeout: Duration = msgspec.field(default_factory=lambda: Duration(10.0))
    heartbeat_interval: Duration = msgspec.field(default_factory=lambda: Duration(3.0))
    min_fetch_size: PositiveInt = 1
    default_fetch_size: PositiveInt = 1 << 20  # per partition and fetch
    max_fetch_size: int = 0  # per fetch; 0 = 50 MiB
    max_fetch_wait: Duration = msgspec.field(default_factory=lambda: Duration(0.25))
    autocommit: AutocommitConfig = msgspec.field(default_factory=AutocommitConfig)
    message_marking: MessageMarkingConfig = msgspec.field(default_factory=MessageMarkingConfig)
    error_backoff: ErrorBackoffConfig = msgspec.field(default_factory=ErrorBackoffConfig)
    header_extraction: HeaderExtractionConfig = msgspec.field(
        default_factory=HeaderExtractionConfig
    )
    partition_processing: PartitionProcessingConfig = msgspec.field(
        default_factory=PartitionProcessingConfig
    )
    dead_letter_topic: str = ""
    auth: AuthConfig | None = None
    tls: TLSClientConfig | None = None

    other_signals = ("logs", "metrics", "profiles")

    @classmethod
    def preprocess(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and isinstance(raw.get("auth"), dict):
            auth = raw["auth"]
            if "tls" in auth:  # the older place of `tls` (the Collector reads it there too)
                raw.setdefault("tls", auth.pop("tls"))
        return raw

    @property
    def effective_topics(self) -> list[str]:
        t = self.traces
        if t is not None and t.topics is not None:
            return list(t.topics)
        if t is not None and t.topic is not None:
            return [t.topic]
        if self.topic is not None:
            return [self.topic]
        return list(self.topics)

    @property
    def exclude_topics(self) -> list[str]:
        return list(self.traces.exclude_topics) if self.traces is not None else []

    @property
    def effective_encoding(self) -> Encoding:
        if self.traces is not None and self.traces.encoding is not None:
            return self.traces.encoding  # type: ignore[return-value]  # checked in validate
        return self.encoding  # type: ignore[return-value]

    @property
    def rebalance_strategies(self) -> list[str]:
        if self.group_rebalance_strategies:
            return list(self.group_rebalance_strategies)
        if self.group_rebalance_strategy:
            return [self.group_rebalance_strategy]
        return ["cooperative-sticky"]

    def validate(self) -> list[str]:
        errs = kafkaclient.check_brokers(self.brokers) + kafkaclient.check_tls(self.tls)
        if self.traces is None or self.traces.encoding is None:
            errs += check_encoding(self.encoding)
        else:
            errs += check_encoding(self.traces.encoding, "traces::encoding")
        if self.topic is not None and self.traces is not None and self.traces.topics:
            errs.append("topic: set either topic or traces::topics, not both")
        topics = self.effective_topics
        if not topics:
            errs.append("topics: at least one topic is required")
        patterns = [t for t in topics if t.startswith("^")]
        if patterns and len(topics) > 1:
            errs.append("topics: a regular expression (^...) must be the only topic")
        for t in patterns:
            try:
                re.compile(t)
            except re.error as exc:
                errs.append(f"topics: invalid regular expression {t!r}: {exc}")
        for t in topics:
            if not t.startswith("^") and not kafkaclient.valid_topic(t):
                errs.append(f"topics: {t!r} is not a valid Kafka topic name")
        for name in ("traces", "logs", "metrics", "profiles"):
            sig = getattr(self, name)
            if sig is not None:
                sig_topics = sig.topics if sig.topics is not None else [sig.topic or ""]
                errs += check_topics(name, sig_topics, sig.exclude_topics)
        for s in self.rebalance_strategies:
            if s not in kafkaoptions.BALANCERS:
                errs.append(
                    f"group_rebalance_strategies: {s!r} is not one of "
                    f"{', '.join(kafkaoptions.BALANCERS)} (balancer extensions are not supported)"
                )
        if self.partition_processing.independent and not self.autocommit.enable:
            errs.append(
                "partition_processing::independent: partition_processing.independent "
                "requires autocommit.enable"
            )
        if self.dead_letter_topic and not kafkaclient.valid_topic(self.dead_letter_topic):
            errs.append(f"dead_letter_topic: {self.dead_letter_topic!r} is not a valid topic name")
        if self.dead_letter_topic in topics:
            errs.append("dead_letter_topic: must not be one of the topics read")
        if not self.group_id:
            errs.append("group_id: must not be empty")
        if self.heartbeat_interval.seconds >= self.session_timeout.seconds:
            errs.append("heartbeat_interval: must be shorter than session_timeout")
        if self.autocommit.interval.seconds <= 0:
            errs.append("autocommit::interval: must be positive")
        return errs


# -- bookkeeping -------------------------------------------------------------------------


class _Chunk:
    """The records of one partition from one fetch: [start, end) in offsets."""

    __slots__ = ("attempt", "done", "end", "first_failure", "raw", "spans", "start", "values")

    def __init__(self, start: int, end: int) -> None:
        self.start = start
        self.end = end
        self.done = False
        self.attempt = 0  # completions of older attempts are ignored
        self.spans = 0
        self.raw: bytes | None = None  # otlp_proto: the good messages, concatenated
        self.values: list[bytes] | None = None  # otlp_json: the good messages
        self.first_failure = 0.0


class _Partition:
    __slots__ = (
        "backoff",
        "chunks",
        "committed",
        "done_to",
        "m_committed",
        "m_failed",
        "m_lag",
        "m_messages",
        "m_offset",
        "next_try",
        "paused",
        "retry",
        "revoked",
        "tp",
    )

    def __init__(self, tp: TopicPartition, backoff: Backoff, metrics: dict[str, Any]) -> None:
        self.tp = tp
        self.chunks: deque[_Chunk] = deque()  # in flight, oldest first
        self.retry: deque[_Chunk] = deque()  # to offer again, oldest first
        self.next_try = 0.0
        self.paused = False
        self.revoked = False
        self.done_to: int | None = None  # every offset below this is done
        self.committed = -1
        self.backoff = backoff
        self.m_messages = metrics["messages"]
        self.m_offset = metrics["offset"]
        self.m_lag = metrics["lag"]
        self.m_failed = metrics["failed"]
        self.m_committed = metrics["committed"]

    def advance(self) -> None:
        chunks = self.chunks
        while chunks and chunks[0].done:
            self.done_to = chunks.popleft().end

    @property
    def pending(self) -> int:
        return len(self.chunks)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, receiver: KafkaReceiver) -> None:
        self.receiver = receiver

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        await self.receiver._revoked(revoked)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        self.receiver._assigned(assigned)


# -- the receiver ----------------------------------------------------------------------


class KafkaReceiver:
    def __init__(
        self, settings: Settings, cfg: KafkaReceiverConfig, next_consumer: TracesConsumer
    ) -> None:
        self.settings = settings
        self.cfg = cfg
        self._next = next_consumer
        self._log = settings.logger
        self._name = str(settings.id)
        self._topics = cfg.effective_topics
        self._brokers: list[str] | None = None  # resolve_canonical_bootstrap_servers_only
        self._token_provider: object | None = None  # SASL OAUTHBEARER
        hx = cfg.header_extraction
        self._extract = [h for h in hx.headers] if hx.extract_headers else []
        self._encoding = cfg.effective_encoding
        self._consumer: AIOKafkaConsumer | None = None
        self._dlq: AIOKafkaProducer | None = None
        self._parts: dict[TopicPartition, _Partition] = {}
        self._task: asyncio.Task[None] | None = None
        self._host: Host | None = None
        self._closing = False
        self._dirty = False  # something became done since the last commit
        self._commit_lock = asyncio.Lock()
        self._committer: asyncio.Task[None] | None = None
        self.warn = RateLimitedLog(self._log, 1.0)  # one a second per kind of problem
        tel = settings.telemetry
        self.metrics = tel.receiver(self._name, "kafka")
        names = ("name", "topic", "partition")
        self._f_messages = tel.counter(
            "otelcol_kafka_receiver_messages", "Kafka messages received", names
        )
        self._f_offset = tel.gauge(
            "otelcol_kafka_receiver_current_offset", "Offset of the last message received", names
        )
        self._f_lag = tel.gauge(
            "otelcol_kafka_receiver_offset_lag", "Messages behind the partition's end", names
        )
        self._f_failed = tel.counter(
            "otelcol_kafka_receiver_unmarshal_failed_spans",
            "Messages that could not be decoded (skipped)",
            names,
        )
        self._f_committed = tel.gauge(
            "tracesieve_kafka_receiver_committed_offset", "Offset last committed", names
        )
        self._m_start = tel.counter(
            "otelcol_kafka_receiver_partition_start", "Partitions assigned", ("name",)
        ).labels(self._name)
        self._m_close = tel.counter(
            "otelcol_kafka_receiver_partition_close", "Partitions revoked", ("name",)
        ).labels(self._name)
        self._m_redelivered = tel.counter(
            "tracesieve_kafka_receiver_redelivered_spans",
            "Spans offered to the pipeline again after a refusal or a later failure",
            ("name",),
        ).labels(self._name)
        self._m_paused = tel.gauge(
            "tracesieve_kafka_receiver_paused_partitions",
            "Partitions paused because the pipeline refuses data",
            ("name",),
        ).labels(self._name)
        self._m_dropped = tel.counter(
            "tracesieve_kafka_receiver_given_up_spans",
            "Spans marked consumed without being exported (on_error, on_permanent_error, "
            "error_backoff.max_elapsed_time)",
            ("name",),
        ).labels(self._name)
        self._dlq_counter = tel.counter(
            "tracesieve_kafka_receiver_dead_letter_messages",
            "Undecodable messages copied to dead_letter_topic, by outcome",
            ("name", "outcome"),
        )

    # -- lifecycle ---------------------------------------------------------------------
    def consumer_kwargs(self) -> dict[str, Any]:
        cfg = self.cfg
        kw = kafkaclient.client_kwargs(
            cfg.brokers, cfg.client_id, cfg.tls, cfg.auth, cfg.protocol_version
        )
        kw.update(
            group_id=cfg.group_id,
            enable_auto_commit=False,
            auto_offset_reset=cfg.initial_offset,
            session_timeout_ms=int(cfg.session_timeout.seconds * 1000),
            heartbeat_interval_ms=int(cfg.heartbeat_interval.seconds * 1000),
            fetch_min_bytes=cfg.min_fetch_size,
            max_partition_fetch_bytes=cfg.default_fetch_size,
            fetch_max_bytes=cfg.max_fetch_size or 50 << 20,
            fetch_max_wait_ms=int(cfg.max_fetch_wait.seconds * 1000),
            partition_assignment_strategy=kafkaoptions.assignors(cfg.rebalance_strategies),
            **kafkaclient.connection_kwargs(cfg.conn_idle_timeout, cfg.metadata),
        )
        if self._brokers is not None:
            kw["bootstrap_servers"] = list(self._brokers)
        if self._token_provider is not None:
            kw["sasl_oauth_token_provider"] = self._token_provider
        return kw

    def _pattern(self) -> str:
        """The topic pattern, with `exclude_topics` as a negative lookahead."""
        pattern = self._topics[0]
        exclude = self.cfg.exclude_topics
        if not exclude:
            return pattern
        return "(?!" + "|".join(f"(?:{e})" for e in exclude) + f")(?:{pattern})"

    async def start(self, host: Host) -> None:
        self._host = host
        self._token_provider = token_provider(self.cfg.auth, host)
        if self.cfg.resolve_canonical_bootstrap_servers_only:
            self._brokers = await asyncio.to_thread(
                kafkaoptions.canonical_brokers, self.cfg.brokers
            )
        kafkaclient.quiet_aiokafka_logs()
        self.consumer_kwargs()  # fail now on bad TLS files
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"{self._name}-consume"
        )

    def _new_consumer(self) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(**self.consumer_kwargs())
        listener = _Listener(self)
        if self._topics[0].startswith("^"):
            consumer.subscribe(pattern=self._pattern(), listener=listener)
        else:
            consumer.subscribe(topics=self._topics, listener=listener)
        return consumer

    async def _run(self) -> None:
        consumer = await kafkaclient.connect(
            self._new_consumer, self.cfg.brokers, self.warn, lambda: not self._closing
        )
        if consumer is None:  # shut down before it could connect
            return
        self._consumer = consumer
        self._log.info(
            "consuming %s from Kafka %s as group %s",
            ",".join(self._topics),
            ",".join(self.cfg.brokers),
            self.cfg.group_id,
        )
        if self.cfg.autocommit.enable:
            self._committer = asyncio.get_running_loop().create_task(
                self._autocommit(consumer), name=f"{self._name}-commit"
            )
        await self._loop(consumer)

    async def _autocommit(self, consumer: AIOKafkaConsumer) -> None:
        """Commit what is done every `autocommit.interval` (apart from the fetch loop, so
        a slow commit never holds up consumption)."""
        interval = self.cfg.autocommit.interval.seconds
        while True:
            await asyncio.sleep(interval)
            if self._dirty:
                await self._commit(consumer, within=max(5.0, 5 * interval))

    async def _loop(self, consumer: AIOKafkaConsumer) -> None:
        while not self._closing:
            try:
                await self._redeliver_due(consumer)
                records = await consumer.getmany(timeout_ms=200)
                for tp, msgs in records.items():
                    part = self._parts.get(tp)
                    if part is not None and msgs and not self._closing:
                        await self._take(consumer, part, msgs)
            except KafkaError as exc:
                self.warn.warning(
                    "Kafka consumer error: %s", kafkaclient.describe(exc), key="fetch"
                )
                await asyncio.sleep(0.5)
            except Exception:
                self._log.exception("unexpected error in the Kafka receiver loop")
                await asyncio.sleep(1.0)

    async def shutdown(self) -> None:
        if self._closing:
            return
        self._closing = True
        loop = asyncio.get_running_loop()
        deadline = self._host.deadline if self._host is not None else None
        left = (deadline - loop.time()) if deadline is not None else 30.0
        grace = max(0.1, min(5.0, left / 2))
        end = loop.time() + grace
        task, self._task = self._task, None
        if task is not None:
            done, _ = await asyncio.wait([task], timeout=grace)
            if not done:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        committer, self._committer = self._committer, None
        if committer is not None:
            committer.cancel()
            await asyncio.gather(committer, return_exceptions=True)
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            # what is still in flight downstream gets until `end` to finish; then commit
            while any(p.chunks for p in self._parts.values()) and loop.time() < end:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            await self._commit(consumer, within=max(0.5, end - loop.time()))
            pending = sum(len(p.chunks) for p in self._parts.values())
            if pending:
                self._log.info(
                    "%d fetched chunks still in flight at shutdown: not committed, "
                    "they will be read again",
                    pending,
                )
            for p in self._parts.values():
                p.revoked = True
            self._parts.clear()
            with contextlib.suppress(Exception):
                await consumer.stop()
        dlq, self._dlq = self._dlq, None
        if dlq is not None:
            with contextlib.suppress(Exception):
                await dlq.stop()

    # -- rebalancing -------------------------------------------------------------------
    def _assigned(self, assigned: Sequence[TopicPartition]) -> None:
        for tp in assigned:
            if tp in self._parts:
                continue
            labels = (self._name, tp.topic, str(tp.partition))
            metrics = {
                "messages": self._f_messages.labels(*labels),
                "offset": self._f_offset.labels(*labels),
                "lag": self._f_lag.labels(*labels),
                "failed": self._f_failed.labels(*labels),
                "committed": self._f_committed.labels(*labels),
            }
            self._parts[tp] = _Partition(tp, Backoff(self.cfg.error_backoff), metrics)
            self._m_start.inc()
        if assigned:
            self._log.info("partitions assigned: %s", _fmt(assigned))

    async def _revoked(self, revoked: Sequence[TopicPartition]) -> None:
        parts = [self._parts.pop(tp) for tp in revoked if tp in self._parts]
        if not parts:
            return
        consumer = self._consumer
        if consumer is not None:
            await self._commit(consumer, parts, within=5.0)
        in_flight = 0
        for p in parts:
            p.revoked = True
            in_flight += len(p.chunks)
            p.chunks.clear()
            p.retry.clear()
            self._m_close.inc()
        self._m_paused.set(sum(1 for p in self._parts.values() if p.paused))
        self._log.info(
            "partitions revoked: %s%s",
            _fmt([p.tp for p in parts]),
            f" ({in_flight} chunks in flight: their new owner reads them again)"
            if in_flight
            else "",
        )

    # -- committing --------------------------------------------------------------------
    async def _commit(
        self,
        consumer: AIOKafkaConsumer,
        parts: Sequence[_Partition] | None = None,
        *,
        within: float,
    ) -> None:
        """Commit, per partition, the end of the done run. aiokafka retries a retriable
        commit error forever; `within` (seconds) bounds that."""
        async with self._commit_lock:
            self._dirty = False
            chosen = list(parts) if parts is not None else list(self._parts.values())
            offsets: dict[TopicPartition, int] = {}
            for p in chosen:
                if p.done_to is not None and p.done_to > p.committed:
                    offsets[p.tp] = p.done_to
            if not offsets:
                return
            try:
                await asyncio.wait_for(consumer.commit(offsets), within)
            except Exception as exc:
                self._dirty = True
                self.warn.warning(
                    "cannot commit offsets: %s", kafkaclient.describe(exc), key="commit"
                )
                return
            for p in chosen:
                off = offsets.get(p.tp)
                if off is not None:
                    p.committed = off
                    p.m_committed.set(off)

    # -- taking records ----------------------------------------------------------------
    async def _take(self, consumer: AIOKafkaConsumer, part: _Partition, msgs: list[Any]) -> None:
        chunk = _Chunk(msgs[0].offset, msgs[-1].offset + 1)
        part.chunks.append(chunk)
        part.m_messages.inc(len(msgs))
        part.m_offset.set(msgs[-1].offset)
        with contextlib.suppress(Exception):  # unassigned meanwhile: no figure
            hw = consumer.highwater(part.tp)
            if hw is not None:
                part.m_lag.set(max(0, hw - chunk.end))
        traces, bad = self._decode(chunk, msgs)
        if bad:
            await self._reject(part, bad)
        if traces is None:
            self._finish(part, chunk)
            return
        if part.retry:  # older data waits to be offered again: keep the order
            part.retry.append(chunk)
            return
        await self._deliver(consumer, part, chunk, traces)

    def _decode(
        self, chunk: _Chunk, msgs: list[Any]
    ) -> tuple[Traces | None, list[tuple[Any, str]]]:
        """The chunk's good messages as one batch (None if no spans), and the bad ones."""
        if self._encoding == "otlp_json":
            return self._decode_json(chunk, msgs)
        if self._extract:
            msgs = [self._with_headers(m) for m in msgs]
        values = [m.value for m in msgs]
        merged = ExportTraceServiceRequest()
        bad: list[tuple[Any, str]] = []
        good: list[bytes] = values
        try:
            # fast path: parse every message into one request (one parse per span)
            nonempty = 0
            for v in values:
                if v:
                    merged.MergeFromString(v)
                    nonempty += 1
            fast = None not in values and len(merged.resource_spans) >= nonempty
        except DecodeError:
            fast = False
        if not fast:
            good = []
            for m in msgs:
                problem = _check(m.value)
                if problem:
                    bad.append((m, problem))
                elif m.value:
                    good.append(m.value)
            merged = ExportTraceServiceRequest()
            for v in good:
                merged.MergeFromString(v)
        n = count_spans(merged)
        if n == 0:
            return None, bad
        raw = b"".join(good)
        chunk.raw, chunk.spans = raw, n
        return Traces(merged, raw=raw, span_count=n), bad

    def _with_headers(self, msg: Any) -> Any:
        """`header_extraction`: the record with its wanted headers added to each of its
        resources as `kafka.header.<name>` (a record that does not decode is left as is,
        to be counted as bad)."""
        found = [(k, v) for k, v in (msg.headers or ()) if k in self._extract]
        if not found or not msg.value:
            return msg
        try:
            req = ExportTraceServiceRequest.FromString(msg.value)
        except DecodeError:
            return msg
        for rs in req.resource_spans:
            for k, v in found:
                kv = rs.resource.attributes.add()
                kv.key = f"kafka.header.{k}"
                kv.value.string_value = v.decode("utf-8", "replace") if v is not None else ""
        return _Record(msg, req.SerializeToString())

    def _decode_json(
        self, chunk: _Chunk, msgs: list[Any]
    ) -> tuple[Traces | None, list[tuple[Any, str]]]:
        merged = ExportTraceServiceRequest()
        bad: list[tuple[Any, str]] = []
        good: list[bytes] = []
        for m in msgs:
            if m.value is None:
                bad.append((m, "null value"))
                continue
            try:
                req = otlpjson.decode(m.value)
            except InvalidTracesError as exc:
                bad.append((m, str(exc)))
                continue
            merged.resource_spans.extend(req.resource_spans)
            good.append(m.value)
        n = count_spans(merged)
        if n == 0:
            return None, bad
        chunk.values, chunk.spans = good, n
        return Traces(merged, span_count=n), bad

    def _rebuild(self, chunk: _Chunk, delivery: Delivery) -> Traces:
        """A fresh batch of a chunk's data (what was sent before may have been changed)."""
        if chunk.raw is not None:
            return Traces(raw=chunk.raw, span_count=chunk.spans, deliveries=(delivery,))
        merged = ExportTraceServiceRequest()
        for v in chunk.values or ():
            merged.resource_spans.extend(otlpjson.decode(v).resource_spans)
        return Traces(merged, span_count=chunk.spans, deliveries=(delivery,))

    async def _reject(self, part: _Partition, bad: list[tuple[Any, str]]) -> None:
        part.m_failed.inc(len(bad))
        m, problem = bad[0]
        self.warn.warning(
            "skipping %d undecodable message%s, e.g. %s/%d offset %d: %s",
            len(bad),
            "" if len(bad) == 1 else "s",
            m.topic,
            m.partition,
            m.offset,
            problem,
            key="decode",
        )
        if self.cfg.dead_letter_topic:
            await self._dead_letter(bad)

    async def _dead_letter(self, bad: list[tuple[Any, str]]) -> None:
        ok = 0
        try:
            async with asyncio.timeout(10.0):
                if self._dlq is None:
                    kw = kafkaclient.client_kwargs(
                        self.cfg.brokers,
                        self.cfg.client_id,
                        self.cfg.tls,
                        self.cfg.auth,
                        self.cfg.protocol_version,
                    )
                    self._dlq = await kafkaclient.started(
                        AIOKafkaProducer(**kw, max_request_size=64 << 20)
                    )
                futs = []
                for m, problem in bad:
                    headers = [
                        *(m.headers or ()),
                        ("tracesieve.error", problem.encode()[:1000]),
                        ("tracesieve.source", f"{m.topic}/{m.partition}/{m.offset}".encode()),
                    ]
                    futs.append(
                        await self._dlq.send(
                            self.cfg.dead_letter_topic, m.value, key=m.key, headers=headers
                        )
                    )
                results = await asyncio.gather(*futs, return_exceptions=True)
                ok = sum(1 for r in results if not isinstance(r, BaseException))
        except Exception as exc:
            self.warn.warning(
                "cannot write to dead_letter_topic: %s", kafkaclient.describe(exc), key="dlq"
            )
        failed = len(bad) - ok
        if ok:
            self._dlq_counter.labels(self._name, "success").inc(ok)
        if failed:
            self._dlq_counter.labels(self._name, "failure").inc(failed)

    # -- delivering --------------------------------------------------------------------
    async def _deliver(
        self,
        consumer: AIOKafkaConsumer,
        part: _Partition,
        chunk: _Chunk,
        traces: Traces | None = None,
    ) -> bool:
        """Offer a chunk to the pipeline; False if it was not taken (held for later)."""
        chunk.attempt += 1
        delivery = Delivery(functools.partial(self._delivered, part, chunk, chunk.attempt))
        if traces is None:
            traces = self._rebuild(chunk, delivery)
        else:
            traces.deliveries = (delivery,)
        n = chunk.spans
        m = self.metrics
        try:
            await self._next.consume_traces(traces)
        except RefusedError as exc:
            m.refused.inc(n)
            m.requests["refused"].inc()
            self.warn.warning(
                "pipeline refused %d spans, pausing %s: %s", n, _fmt([part.tp]), exc, key="refused"
            )
            chunk.attempt += 1  # late completions of this attempt are ignored
            delivery.release(False)
            self._hold(consumer, part, chunk, front=True)
            return False
        except PermanentError as exc:
            m.refused.inc(n)
            m.requests["invalid" if isinstance(exc, InvalidDataError) else "failure"].inc()
            chunk.attempt += 1
            delivery.release(False)
            if self.cfg.message_marking.on_permanent_error:
                self.warn.warning(
                    "pipeline rejected %d spans permanently: %s", n, exc, key="permanent"
                )
                self._m_dropped.inc(n)
                self._finish(part, chunk)
                return True
            self.warn.warning(
                "pipeline rejected %d spans permanently, retrying: %s", n, exc, key="permanent"
            )
            self._hold(consumer, part, chunk, front=True)
            return False
        except Exception as exc:
            m.refused.inc(n)
            m.requests["failure"].inc()
            self._log.error("pipeline failed on %d spans (will retry): %s", n, exc, exc_info=True)
            chunk.attempt += 1
            delivery.release(False)
            self._hold(consumer, part, chunk, front=True)
            return False
        m.accepted.inc(n)
        m.requests["success"].inc()
        delivery.release(True)
        return True

    def _delivered(self, part: _Partition, chunk: _Chunk, attempt: int, ok: bool) -> None:
        """Delivery callback: every holder of the chunk's data has let go of it."""
        if part.revoked or chunk.done or chunk.attempt != attempt:
            return
        if ok:
            self._finish(part, chunk)
        elif self.cfg.message_marking.on_error:
            self._m_dropped.inc(chunk.spans)
            self._finish(part, chunk)
        else:
            chunk.attempt += 1
            self.warn.warning(
                "%d spans failed downstream; they will be offered again", chunk.spans, key="failed"
            )
            consumer = self._consumer
            if consumer is not None:
                self._hold(consumer, part, chunk)

    def _finish(self, part: _Partition, chunk: _Chunk) -> None:
        chunk.done = True
        chunk.raw = chunk.values = None
        part.advance()
        self._dirty = True

    def _hold(
        self, consumer: AIOKafkaConsumer, part: _Partition, chunk: _Chunk, front: bool = False
    ) -> None:
        """Keep a chunk to offer again after a backoff; stop fetching its partition."""
        now = asyncio.get_running_loop().time()
        if not chunk.first_failure:
            chunk.first_failure = now
        limit = self.cfg.error_backoff.max_elapsed_time.seconds
        if limit and now - chunk.first_failure > limit:
            self._log.error(
                "giving up on %d spans from %s offsets %d-%d after %.0fs",
                chunk.spans,
                _fmt([part.tp]),
                chunk.start,
                chunk.end - 1,
                now - chunk.first_failure,
            )
            self._m_dropped.inc(chunk.spans)
            self._finish(part, chunk)
            return
        waiting = bool(part.retry)
        if front:
            part.retry.appendleft(chunk)
        else:
            part.retry.append(chunk)
        if front or not waiting:
            delay = (
                part.backoff.next_delay()
                if self.cfg.error_backoff.enabled
                else self.cfg.error_backoff.initial_interval.seconds
            )
            part.next_try = now + delay
        if not part.paused and not part.revoked:
            with contextlib.suppress(Exception):  # not assigned any more: nothing to pause
                consumer.pause(part.tp)
            part.paused = True
            self._m_paused.set(sum(1 for p in self._parts.values() if p.paused))

    async def _redeliver_due(self, consumer: AIOKafkaConsumer) -> None:
        now = asyncio.get_running_loop().time()
        for part in list(self._parts.values()):
            while part.retry and now >= part.next_try and not part.revoked and not self._closing:
                chunk = part.retry.popleft()
                self._m_redelivered.inc(chunk.spans)
                if not await self._deliver(consumer, part, chunk):
                    break
            if part.paused and not part.retry and not part.revoked:
                with contextlib.suppress(Exception):
                    consumer.resume(part.tp)
                part.paused = False
                part.backoff = Backoff(self.cfg.error_backoff)
                self._m_paused.set(sum(1 for p in self._parts.values() if p.paused))


class _Record:
    """A consumer record with another value (its other fields as they were)."""

    def __init__(self, msg: Any, value: bytes) -> None:
        self._msg = msg
        self.value = value

    def __getattr__(self, name: str) -> Any:
        return getattr(self._msg, name)


def _check(value: bytes | None) -> str:
    """What is wrong with a message ("" if it is a valid OTLP request)."""
    if value is None:
        return "null value"
    if not value:
        return ""
    try:
        req = ExportTraceServiceRequest.FromString(value)
    except DecodeError as exc:
        return f"cannot decode ExportTraceServiceRequest: {exc}"
    if not req.resource_spans:
        return "not an OTLP ExportTraceServiceRequest (no resource_spans)"
    return ""


def _fmt(tps: Sequence[TopicPartition]) -> str:
    by_topic: dict[str, list[int]] = {}
    for tp in tps:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return ", ".join(f"{t}{sorted(ps)}" for t, ps in sorted(by_topic.items()))


def create(
    settings: Settings, cfg: KafkaReceiverConfig, next_consumer: TracesConsumer
) -> KafkaReceiver:
    return KafkaReceiver(settings, cfg, next_consumer)


factory = ReceiverFactory(
    type="kafka",
    config_type=KafkaReceiverConfig,
    create=create,
    stability="beta",
    description="OTLP messages from Kafka topics, as one consumer group, at least once",
)
