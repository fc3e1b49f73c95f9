"""`kafka` exporter: spans to Kafka topics, as the OTel Collector's kafka exporter writes them.

Each message is one OTLP `ExportTraceServiceRequest` (`encoding: otlp_proto`, what the
OTel Collector's kafka receiver reads) or its OTLP JSON form (`otlp_json`).

- `partition_traces_by_id`: one message per trace, keyed by the trace id (32 hex
  characters, as the OTel Collector keys them), so every span of a trace lands on one
  partition and one consumer of a group.
- `topic_from_attribute`: each trace goes to `topic_prefix + value + topic_suffix`, the
  value taken from the trace's root span, else its first span in the batch, else that
  span's resource; traces without the attribute (or with a value that is not a valid
  topic name) go to `topic`.
- `producer.max_message_bytes` is a hard limit: a batch is split so no record (key,
  value, headers and record-batch framing counted) exceeds it; a span that cannot fit
  alone is dropped, counted (`tracesieve_kafka_exporter_oversized_spans`) and logged,
  never retried.
- Splitting is done on the wire (`pipeline.wiresplit`): spans are never decoded or
  encoded again for it. Messages of a batch are produced together (many in flight);
  on a retry only the messages not yet acknowledged are sent again.
- From the batch's client metadata (receivers' `include_metadata: true`): the values of
  `include_metadata_keys` become record headers (one per value), `traces.topic_from_
  metadata_key` names the topic (before `topic_from_attribute` and `topic`), and
  `traces.message_key_from_metadata_key` the record key. A batch processor or
  `sending_queue.batch` before this must keep those keys (their `metadata_keys`).
- `record_headers` (and tracesieve's `headers`): static headers on every record;
  `record_partitioner`: see `pipeline.kafkaoptions` (default `sticky_key` with the
  Sarama-compatible hasher, as the Collector).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from typing import Any, Literal

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from pipeline import kafkaclient, kafkaoptions, otlpjson, wiresplit
from pipeline.component import ExporterFactory, Host, Settings
from pipeline.configtypes import (
    Config,
    Duration,
    NonNegInt,
    PositiveInt,
    QueueConfig,
    RetryConfig,
    TLSClientConfig,
    enable_null_blocks,
)
from pipeline.exporters.helper import ExporterHelper, HelperExporter, RetryableError
from pipeline.kafkaclient import AuthConfig, ClientMetadataConfig
from pipeline.kafkaoptions import token_provider as kafkaclient_token_provider
from pipeline.pdata import Traces
from pipeline.telemetry import RateLimitedLog

Encoding = Literal["otlp_proto", "otlp_json"]
DEFAULT_TOPIC = "otlp_spans"
ENCODINGS = ("otlp_proto", "otlp_json")
OTHER_ENCODINGS = ("jaeger_proto", "jaeger_json", "zipkin_proto", "zipkin_json")


def check_encoding(value: str | None, field: str = "encoding") -> list[str]:
    if value is None or value in ENCODINGS:
        return []
    if value in OTHER_ENCODINGS:
        return [
            f"{field}: {value!r} is not supported: tracesieve writes OTLP (otlp_proto, otlp_json)"
        ]
    return [
        f"{field}: {value!r} is not a built-in encoding (otlp_proto, otlp_json), so the "
        "Collector reads it as an encoding extension, which tracesieve does not have"
    ]


class CompressionParams(Config):
    level: int = -1  # accepted; aiokafka has no compression levels


class ProducerConfig(Config):
    max_message_bytes: PositiveInt = 1_000_000
    max_broker_write_bytes: PositiveInt = 104_857_600
    required_acks: Literal[0, 1, -1] = 1
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "none"
    compression_params: CompressionParams | None = None
    linger: Duration = msgspec.field(default_factory=lambda: Duration(0.01))
    # accepted; aiokafka has no such settings (see docs/compatibility.md)
    flush_max_messages: NonNegInt = 10_000
    allow_auto_topic_creation: bool = True

    def validate(self) -> list[str]:
        errs = []
        if self.max_message_bytes < 1024:
            errs.append("max_message_bytes: must be at least 1024")
        if self.max_broker_write_bytes < self.max_message_bytes:
            errs.append(
                "max_broker_write_bytes: must be greater than or equal to max_message_bytes"
            )
        p = self.compression_params
        if p is not None and p.level != -1 and self.compression in ("snappy", "none"):
            errs.append(f"compression_params::level: {self.compression} has no compression levels")
        return errs


class SignalConfig(Config):
    """The OTel Collector's newer `traces:` block."""

    topic: str | None = None
    encoding: str | None = None
    # the topic from this client metadata key (needs it in include_metadata_keys)
    topic_from_metadata_key: str = ""
    # the record key from this client metadata key (needs it in include_metadata_keys)
    message_key_from_metadata_key: str = ""

    def validate(self) -> list[str]:
        return check_encoding(self.encoding)


class OtherSignalConfig(Config):
    """`logs:`, `metrics:`, `profiles:`: accepted and ignored (tracesieve carries traces)."""

    topic: str | None = None
    encoding: str | None = None
    topic_from_metadata_key: str = ""
    message_key_from_metadata_key: str = ""


class Empty(Config):
    pass


class StickyKeyConfig(Config):
    hasher: str = "sarama_compat"

    def validate(self) -> list[str]:
        if self.hasher not in ("sarama_compat", "murmur2"):
            return [f"hasher: invalid hasher {self.hasher!r}: want sarama_compat or murmur2"]
        return []


class RecordPartitionerConfig(Config):
    """At most one strategy (see `pipeline.kafkaoptions`); `type: <name>` is an older
    form of the same."""

    type: Literal["sticky_key", "sticky", "round_robin", "least_backup"] | None = None
    sticky_key: StickyKeyConfig | None = None
    sticky: Empty | None = None
    round_robin: Empty | None = None
    least_backup: Empty | None = None
    extension: str | None = None

    @classmethod
    def preprocess(cls, raw: Any) -> Any:
        if isinstance(raw, dict):
            for k in ("sticky_key", "sticky", "round_robin", "least_backup"):
                if k in raw and raw[k] is None:
                    raw[k] = {}
        return raw

    def validate(self) -> list[str]:
        given = [
            k
            for k in ("type", "sticky_key", "sticky", "round_robin", "least_backup", "extension")
            if getattr(self, k) is not None
        ]
        if len(given) > 1:
            return [f"at most one record_partitioner option may be set, got {', '.join(given)}"]
        if self.extension is not None:
            if not self.extension:
                return ["extension: record_partitioner extension must be set"]
            return [
                f"extension: partitioner extensions are not supported: tracesieve has no "
                f"{self.extension!r} extension (use sticky_key, sticky, round_robin or "
                "least_backup)"
            ]
        return []

    def strategy(self) -> tuple[str, str]:
        """(strategy, hasher)."""
        if self.type is not None:
            return self.type, "sarama_compat"
        for name in ("sticky", "round_robin", "least_backup"):
            if getattr(self, name) is not None:
                return name, "sarama_compat"
        hasher = self.sticky_key.hasher if self.sticky_key is not None else "sarama_compat"
        return "sticky_key", hasher


class KafkaExporterConfig(Config):
    brokers: list[str] = msgspec.field(default_factory=lambda: list(kafkaclient.DEFAULT_BROKERS))
    client_id: str = kafkaclient.DEFAULT_CLIENT_ID
    protocol_version: str = ""  # "" = negotiate
    resolve_canonical_bootstrap_servers_only: bool = False
    conn_idle_timeout: Duration = msgspec.field(default_factory=lambda: Duration(540.0))
    metadata: ClientMetadataConfig = msgspec.field(default_factory=ClientMetadataConfig)
    topic: str = DEFAULT_TOPIC
    encoding: str = "otlp_proto"
    traces: SignalConfig | None = None
    logs: OtherSignalConfig | None = None
    metrics: OtherSignalConfig | None = None
    profiles: OtherSignalConfig | None = None
    partition_traces_by_id: bool = False
    partition_metrics_by_resource_attributes: bool = False
    partition_logs_by_resource_attributes: bool = False
    partition_logs_by_trace_id: bool = False
    record_partitioner: RecordPartitionerConfig | None = None
    include_metadata_keys: list[str] = []
    record_headers: dict[str, str] = {}
    topic_from_attribute: str = ""
    topic_prefix: str = ""
    topic_suffix: str = ""
    headers: dict[str, str] = {}  # tracesieve's name for record_headers (both are used)
    producer: ProducerConfig = msgspec.field(default_factory=ProducerConfig)
    timeout: Duration = msgspec.field(default_factory=lambda: Duration(5.0))
    retry_on_failure: RetryConfig = msgspec.field(default_factory=RetryConfig)
    sending_queue: QueueConfig = msgspec.field(default_factory=QueueConfig)
    auth: AuthConfig | None = None
    tls: TLSClientConfig | None = None

    other_signals = (
        "logs",
        "metrics",
        "profiles",
        "partition_metrics_by_resource_attributes",
        "partition_logs_by_resource_attributes",
        "partition_logs_by_trace_id",
    )

    @classmethod
    def preprocess(cls, raw: Any) -> Any:
        raw = enable_null_blocks(raw, ("sending_queue", "batch"))
        if isinstance(raw, dict) and isinstance(raw.get("record_partitioner"), dict):
            RecordPartitionerConfig.preprocess(raw["record_partitioner"])
        if isinstance(raw, dict) and isinstance(raw.get("auth"), dict):
            # `auth.tls` is the older place of `tls` (the Collector reads it there too)
            auth = raw["auth"]
            if "tls" in auth:
                raw.setdefault("tls", auth.pop("tls"))
        return raw

    @property
    def effective_topic(self) -> str:
        if self.traces is not None and self.traces.topic is not None:
            return self.traces.topic
        return self.topic

    @property
    def effective_encoding(self) -> Encoding:
        if self.traces is not None and self.traces.encoding is not None:
            return self.traces.encoding  # type: ignore[return-value]  # checked in validate
        return self.encoding  # type: ignore[return-value]

    def validate(self) -> list[str]:
        errs = kafkaclient.check_brokers(self.brokers) + kafkaclient.check_tls(self.tls)
        errs += check_encoding(self.encoding)
        if not kafkaclient.valid_topic(self.effective_topic):
            errs.append(f"topic: {self.effective_topic!r} is not a valid Kafka topic name")
        for name in ("topic_prefix", "topic_suffix"):
            value = getattr(self, name)
            if not kafkaclient.valid_topic_part(value):
                errs.append(f"{name}: {value!r} has characters Kafka topic names cannot have")
        if (self.topic_prefix or self.topic_suffix) and not self.topic_from_attribute:
            errs.append("topic_prefix: needs topic_from_attribute")
        if self.timeout.seconds <= 0:
            errs.append("timeout: must be positive")
        if self.sending_queue.wait_for_result and self.sending_queue.storage:
            errs.append("sending_queue: wait_for_result cannot be used with storage")
        if self.partition_logs_by_resource_attributes and self.partition_logs_by_trace_id:
            errs.append(
                "partition_logs_by_trace_id: partition_logs_by_resource_attributes and "
                "partition_logs_by_trace_id cannot both be enabled"
            )
        batch = self.sending_queue.batch
        partition = {k.lower() for k in batch.partition.metadata_keys} if batch else set()
        for name, sig in (
            ("traces", self.traces),
            ("logs", self.logs),
            ("metrics", self.metrics),
            ("profiles", self.profiles),
        ):
            if sig is None or batch is None:
                continue  # without batching, each batch keeps its client metadata
            for field in ("topic_from_metadata_key", "message_key_from_metadata_key"):
                key = getattr(sig, field)
                if key and key.lower() not in partition:
                    errs.append(
                        f"{name}::{field}: {field} must be present in include_metadata_keys: "
                        f"{key!r} not found in include_metadata_keys="
                        f"{batch.partition.metadata_keys} (with sending_queue::batch, the keys "
                        "batches keep are sending_queue::batch::partition::metadata_keys)"
                    )
        t = self.traces
        if t is not None and t.message_key_from_metadata_key and self.partition_traces_by_id:
            errs.append(
                "traces::message_key_from_metadata_key: cannot be used with partition_traces_by_id"
            )
        if batch is not None and self.include_metadata_keys:
            missing = [k for k in self.include_metadata_keys if k.lower() not in partition]
            if missing:
                errs.append(
                    "sending_queue::batch::partition::metadata_keys: batch partition "
                    "metadata_keys must include include_metadata_keys (missing "
                    f"{', '.join(missing)}), so that batches keep them"
                )
        return errs


Headers = list[tuple[str, bytes]]


class _Message:
    __slots__ = ("fut", "headers", "key", "spans", "topic", "value")

    def __init__(self, topic: str, key: bytes | None, value: bytes, spans: int) -> None:
        self.topic = topic
        self.key = key
        self.value = value
        self.spans = spans
        self.headers: Headers = []
        self.fut: asyncio.Future[Any] | None = None


class _PushState:
    """The encoded messages of one batch, kept across retries (encode once, and send
    again only what was not acknowledged)."""

    __slots__ = ("messages", "rejected")

    def __init__(self, messages: list[_Message], rejected: int) -> None:
        self.messages = messages
        self.rejected = rejected


def _string(v: AnyValue) -> str | None:
    which = v.WhichOneof("value")
    if which == "string_value":
        return v.string_value
    if which in ("int_value", "bool_value", "double_value"):
        return str(getattr(v, which)).lower() if which == "bool_value" else str(getattr(v, which))
    return None


def _lookup(attributes: Sequence[KeyValue], key: str) -> str | None:
    for kv in attributes:
        if kv.key == key:
            return _string(kv.value)
    return None


class KafkaExporter(HelperExporter):
    def __init__(self, settings: Settings, cfg: KafkaExporterConfig) -> None:
        self.cfg = cfg
        self.settings = settings
        self._log = settings.logger
        self._topic = cfg.effective_topic
        self._encoding = cfg.effective_encoding
        static = {**cfg.record_headers, **cfg.headers}
        self._headers: Headers = [(k, v.encode()) for k, v in static.items()]
        # each batch's encoded messages while it is being sent (across retries); an entry
        # goes once the batch is sent, or with the batch when the sender gives up on it
        self._sending: weakref.WeakKeyDictionary[Traces, _PushState] = weakref.WeakKeyDictionary()
        self._brokers: list[str] | None = None  # resolve_canonical_bootstrap_servers_only
        self._token_provider: object | None = None  # SASL OAUTHBEARER
        rp = cfg.record_partitioner
        self._strategy = rp.strategy() if rp is not None else ("sticky_key", "sarama_compat")
        self._producer: AIOKafkaProducer | None = None
        self._connected = asyncio.Event()
        self._connector: asyncio.Task[None] | None = None
        self.warn = RateLimitedLog(self._log, 1.0)
        limit = cfg.producer.max_message_bytes
        # value budget per message: the record-batch framing, key and headers come off
        self._budget_unkeyed = limit - self._overhead(None)
        self._budget_keyed = limit - self._overhead(b"0" * 32)
        if self._budget_keyed < 256:
            raise ValueError("producer::max_message_bytes: too small for the record framing")
        tel = settings.telemetry
        name = str(settings.id)
        self._messages = tel.counter(
            "otelcol_kafka_exporter_messages",
            "Kafka messages produced, by topic and outcome",
            ("exporter", "topic", "outcome"),
        )
        self._bytes = tel.counter(
            "otelcol_kafka_exporter_bytes",
            "Bytes of message values produced (before compression)",
            ("exporter", "topic"),
        )
        self._oversized = tel.counter(
            "tracesieve_kafka_exporter_oversized_spans",
            "Spans dropped because alone they exceed producer.max_message_bytes",
            ("exporter",),
        ).labels(name)
        self._children: dict[tuple[str, str], Any] = {}
        self.helper = ExporterHelper(
            settings,
            self._push,
            retry=cfg.retry_on_failure,
            queue=cfg.sending_queue,
            start=self._start,
            shutdown=self._shutdown,
        )

    def _overhead(self, key: bytes | None, headers: Headers | None = None) -> int:
        hs = self._headers if headers is None else headers
        est = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, b"", hs)
        return int(est) + 5  # + the value's length prefix growing up to 5 bytes

    def _from_metadata(self, traces: Traces) -> tuple[str | None, bytes | None, Headers]:
        """(topic, record key, extra headers) from the batch's client metadata."""
        client = traces.client
        if client is None:
            return None, None, []
        extra: Headers = [
            (k, v.encode()) for k in self.cfg.include_metadata_keys for v in client.get(k)
        ]
        topic = key = None
        sig = self.cfg.traces
        if sig is not None and sig.topic_from_metadata_key:
            values = client.get(sig.topic_from_metadata_key)
            if values and kafkaclient.valid_topic(values[0]):
                topic = values[0]
        if sig is not None and sig.message_key_from_metadata_key:
            values = client.get(sig.message_key_from_metadata_key)
            if values and values[0]:
                key = values[0].encode()
        return topic, key, extra

    # -- lifecycle ---------------------------------------------------------------------
    def producer_kwargs(self) -> dict[str, Any]:
        cfg = self.cfg
        p = cfg.producer
        kw = kafkaclient.client_kwargs(
            cfg.brokers, cfg.client_id, cfg.tls, cfg.auth, cfg.protocol_version
        )
        kw.update(
            acks={0: 0, 1: 1, -1: "all"}[p.required_acks],
            compression_type=None if p.compression == "none" else p.compression,
            linger_ms=int(p.linger.seconds * 1000),
            # one record batch per partition per request, never above the limit
            max_batch_size=p.max_message_bytes,
            max_request_size=p.max_message_bytes,
            request_timeout_ms=max(1000, int(cfg.timeout.seconds * 1000)),
            enable_idempotence=False,
            partitioner=kafkaoptions.make(*self._strategy),
            **kafkaclient.connection_kwargs(cfg.conn_idle_timeout, cfg.metadata),
        )
        if self._brokers is not None:
            kw["bootstrap_servers"] = list(self._brokers)
        if self._token_provider is not None:
            kw["sasl_oauth_token_provider"] = self._token_provider
        return kw

    async def _start(self, host: Host) -> None:
        self._token_provider = kafkaclient_token_provider(self.cfg.auth, host)
        if self.cfg.resolve_canonical_bootstrap_servers_only:
            self._brokers = await asyncio.to_thread(
                kafkaoptions.canonical_brokers, self.cfg.brokers
            )
        kafkaclient.quiet_aiokafka_logs()
        self.producer_kwargs()  # fail now on bad TLS files
        self._connector = asyncio.get_running_loop().create_task(
            self._connect(), name=f"{self.settings.id}-connect"
        )

    async def _connect(self) -> None:
        """Connect in the background, retrying: the collector runs (and queues) while
        Kafka is unreachable."""
        producer = await kafkaclient.connect(
            lambda: AIOKafkaProducer(**self.producer_kwargs()), self.cfg.brokers, self.warn
        )
        self._producer = producer
        self._connected.set()
        self._log.info("connected to Kafka %s", ",".join(self.cfg.brokers))

    async def _shutdown(self) -> None:
        if self._connector is not None:
            self._connector.cancel()
            await asyncio.gather(self._connector, return_exceptions=True)
            self._connector = None
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    # -- encoding ----------------------------------------------------------------------
    def _routes(self, req: ExportTraceServiceRequest) -> dict[bytes, str]:
        """Topic per trace id, by `topic_from_attribute` (see the module docstring)."""
        attr = self.cfg.topic_from_attribute
        roots: dict[bytes, Span] = {}
        first: dict[bytes, tuple[Span, ResourceSpans]] = {}
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    tid = span.trace_id
                    if not span.parent_span_id:
                        roots[tid] = span
                    if tid not in first:
                        first[tid] = (span, rs)
        out: dict[bytes, str] = {}
        prefix, suffix = self.cfg.topic_prefix, self.cfg.topic_suffix
        for tid, (span, rs) in first.items():
            root = roots.get(tid)
            value = _lookup(root.attributes, attr) if root is not None else None
            if value is None and (root is None or root is not span):
                value = _lookup(span.attributes, attr)
            if value is None:
                value = _lookup(rs.resource.attributes, attr)
            if value is not None:
                topic = f"{prefix}{value}{suffix}"
                if kafkaclient.valid_topic(topic):
                    out[tid] = topic
        return out

    def encode(self, traces: Traces) -> tuple[list[_Message], int]:
        """The messages for a batch, and how many spans were too large to send."""
        if traces.span_count == 0:
            return [], 0
        meta_topic, meta_key, extra = self._from_metadata(traces)
        headers = self._headers + extra if extra else self._headers
        limit = self.cfg.producer.max_message_bytes
        if extra or meta_key is not None:
            unkeyed = limit - self._overhead(meta_key, headers)
            keyed = limit - self._overhead(b"0" * 32, headers)
        else:
            unkeyed, keyed = self._budget_unkeyed, self._budget_keyed
        # one message key per trace (unless the metadata gives one), topics by attribute
        # (unless the metadata gives one)
        by_id = self.cfg.partition_traces_by_id and meta_key is None
        routes = (
            self._routes(traces.request)
            if self.cfg.topic_from_attribute and meta_topic is None
            else None
        )
        topic = meta_topic or self._topic
        encode = self._encode_json if self._encoding == "otlp_json" else self._encode_proto
        msgs, over = encode(traces, topic, routes, by_id, meta_key, unkeyed, keyed)
        for m in msgs:
            m.headers = headers
        return msgs, over

    def _encode_proto(
        self,
        traces: Traces,
        topic: str,
        routes: dict[bytes, str] | None,
        by_id: bool,
        meta_key: bytes | None,
        unkeyed: int,
        keyed: int,
    ) -> tuple[list[_Message], int]:
        if not by_id and not routes:
            raw = traces.to_bytes()
            if len(raw) <= unkeyed:  # the common case: one message, as is
                return [_Message(topic, meta_key, raw, traces.span_count)], 0
            return self._sized(topic, meta_key, wiresplit.parse(raw), unkeyed)
        refs = wiresplit.parse(traces.to_bytes())
        out: list[_Message] = []
        oversized = 0
        if by_id:
            for tid, group in wiresplit.by_trace(refs).items():
                t = routes.get(tid, topic) if routes else topic
                msgs, over = self._sized(t, tid.hex().encode(), group, keyed)
                out += msgs
                oversized += over
        else:
            assert routes is not None
            for t, group in wiresplit.group(refs, lambda tid: routes.get(tid, topic)).items():
                msgs, over = self._sized(t, meta_key, group, unkeyed)
                out += msgs
                oversized += over
        return out, oversized

    @staticmethod
    def _sized(
        topic: str, key: bytes | None, refs: list[wiresplit.SpanRef], budget: int
    ) -> tuple[list[_Message], int]:
        if wiresplit.size_bound(refs) <= budget:
            return [_Message(topic, key, wiresplit.build(refs), len(refs))], 0
        parts, oversized = wiresplit.chunk(refs, budget)
        msgs = [_Message(topic, key, wiresplit.build(p), len(p)) for p in parts]
        return msgs, len(oversized)

    def _encode_json(
        self,
        traces: Traces,
        default_topic: str,
        routes: dict[bytes, str] | None,
        by_id: bool,
        meta_key: bytes | None,
        unkeyed: int,
        keyed: int,
    ) -> tuple[list[_Message], int]:
        req = traces.request
        groups: dict[tuple[str, bytes | None], list[tuple[ResourceSpans, ScopeSpans, Span]]] = {}
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    tid = span.trace_id
                    t = routes.get(tid, default_topic) if routes else default_topic
                    groups.setdefault((t, tid if by_id else None), []).append((rs, ss, span))
        out: list[_Message] = []
        oversized = 0
        for (topic, tid), items in groups.items():
            key = tid.hex().encode() if tid is not None else meta_key
            budget = keyed if tid is not None else unkeyed
            todo = [items]
            while todo:
                part = todo.pop()
                value = otlpjson.encode(_request(part))
                if len(value) <= budget:
                    out.append(_Message(topic, key, value, len(part)))
                elif len(part) == 1:
                    oversized += 1
                else:
                    half = len(part) // 2
                    todo += [part[half:], part[:half]]
        return out, oversized

    # -- sending -----------------------------------------------------------------------
    async def _push(self, traces: Traces) -> int:
        state = self._sending.get(traces)
        if state is None:
            messages, oversized = self.encode(traces)
            state = _PushState(messages, oversized)
            self._sending[traces] = state
            if oversized:
                self._oversized.inc(oversized)
                self.warn.warning(
                    "dropping %d spans larger than producer.max_message_bytes (%d) on their own",
                    oversized,
                    self.cfg.producer.max_message_bytes,
                )
        if state.messages:
            await self._produce(state)
        self._sending.pop(traces, None)
        return state.rejected

    async def _produce(self, state: _PushState) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.timeout.seconds
        producer = self._producer
        if producer is None:
            try:
                await asyncio.wait_for(self._connected.wait(), self.cfg.timeout.seconds)
            except TimeoutError:
                raise RetryableError("not connected to Kafka") from None
            producer = self._producer
            if producer is None:
                raise RetryableError("not connected to Kafka")
        first_error: BaseException | None = None
        try:
            async with asyncio.timeout_at(deadline):
                for m in state.messages:
                    if m.fut is not None:
                        continue  # in flight since an earlier attempt
                    try:
                        m.fut = await producer.send(m.topic, m.value, key=m.key, headers=m.headers)
                    except KafkaError as exc:
                        if kafkaclient.is_retriable(exc):
                            first_error = exc
                            break
                        m.fut = loop.create_future()  # this message can never go
                        m.fut.set_exception(exc)
        except TimeoutError:
            first_error = TimeoutError("Kafka did not take the messages within timeout")
        futs = [m.fut for m in state.messages if m.fut is not None]
        if futs:
            await asyncio.wait(futs, timeout=max(0.0, deadline - loop.time()))
        keep: list[_Message] = []
        counts: dict[tuple[str, str], int] = {}
        nbytes: dict[str, int] = {}
        for m in state.messages:
            fut = m.fut
            if fut is None or not fut.done():
                keep.append(m)  # not sent, or still in flight: awaited again on retry
                continue
            if fut.cancelled():
                m.fut = None
                keep.append(m)
                continue
            err = fut.exception()
            if err is None:
                counts[m.topic, "success"] = counts.get((m.topic, "success"), 0) + 1
                nbytes[m.topic] = nbytes.get(m.topic, 0) + len(m.value)
                continue
            counts[m.topic, "failure"] = counts.get((m.topic, "failure"), 0) + 1
            first_error = first_error or err
            if kafkaclient.is_retriable(err):
                m.fut = None
                keep.append(m)
            else:
                state.rejected += m.spans
                self.warn.warning(
                    "Kafka rejected a message of %d bytes (%d spans) for %s: %s",
                    len(m.value),
                    m.spans,
                    m.topic,
                    kafkaclient.describe(err),
                )
        self._count(counts, nbytes)
        state.messages = keep
        if keep:
            if first_error is None:
                first_error = TimeoutError("no acknowledgement from Kafka within timeout")
            raise RetryableError(
                f"{len(keep)} Kafka messages not acknowledged: {kafkaclient.describe(first_error)}"
            )

    def _count(self, counts: dict[tuple[str, str], int], nbytes: dict[str, int]) -> None:
        name = str(self.settings.id)
        for (topic, outcome), n in counts.items():
            child = self._children.get((topic, outcome))
            if child is None:
                child = self._children[topic, outcome] = self._messages.labels(name, topic, outcome)
            child.inc(n)
        for topic, n in nbytes.items():
            child = self._children.get((topic, "bytes"))
            if child is None:
                child = self._children[topic, "bytes"] = self._bytes.labels(name, topic)
            child.inc(n)


def _request(items: list[tuple[ResourceSpans, ScopeSpans, Span]]) -> ExportTraceServiceRequest:
    """A request holding these spans, resource and scope runs kept together."""
    out = ExportTraceServiceRequest()
    last_rs: ResourceSpans | None = None
    last_ss: ScopeSpans | None = None
    out_rs: ResourceSpans | None = None
    out_ss: ScopeSpans | None = None
    for rs, ss, span in items:
        if rs is not last_rs or out_rs is None:
            out_rs = out.resource_spans.add()
            out_rs.resource.CopyFrom(rs.resource)
            out_rs.schema_url = rs.schema_url
            last_rs, last_ss = rs, None
        if ss is not last_ss or out_ss is None:
            out_ss = out_rs.scope_spans.add()
            out_ss.scope.CopyFrom(ss.scope)
            out_ss.schema_url = ss.schema_url
            last_ss = ss
        out_ss.spans.append(span)
    return out


def create(settings: Settings, cfg: KafkaExporterConfig) -> KafkaExporter:
    return KafkaExporter(settings, cfg)


factory = ExporterFactory(
    type="kafka",
    config_type=KafkaExporterConfig,
    create=create,
    stability="beta",
    description="OTLP (protobuf or JSON) messages to Kafka topics, keyed by trace id if asked",
)

__all__ = ["KafkaExporter", "KafkaExporterConfig", "factory"]
