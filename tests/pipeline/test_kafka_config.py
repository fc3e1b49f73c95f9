"""The kafka exporter's and receiver's options: OTel Collector defaults, every error with
its path, and how they map onto aiokafka. No broker needed here (see tests/kafka)."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from pipeline import kafkaclient
from pipeline.configtypes import decode, to_builtins
from pipeline.errors import RefusedError
from pipeline.exporters.kafka import KafkaExporter, KafkaExporterConfig
from pipeline.pdata import Traces
from pipeline.receivers.kafka import KafkaReceiver, KafkaReceiverConfig
from pipeline.testing import FakeHost, Sink, make_span, make_traces, settings
from tests.kafka_broker import free_port


def exporter_cfg(raw: dict) -> KafkaExporterConfig:
    cfg, errs = decode(raw, KafkaExporterConfig, "exporters::kafka")
    assert not errs and cfg is not None
    return cfg


def receiver_cfg(raw: dict) -> KafkaReceiverConfig:
    cfg, errs = decode(raw, KafkaReceiverConfig, "receivers::kafka")
    assert not errs and cfg is not None
    return cfg


def test_exporter_defaults_are_the_otel_collectors():
    cfg = exporter_cfg({})
    assert cfg.brokers == ["localhost:9092"]
    assert cfg.client_id == "otel-collector"
    assert cfg.effective_topic == "otlp_spans"
    assert cfg.effective_encoding == "otlp_proto"
    assert cfg.partition_traces_by_id is False
    p = cfg.producer
    assert (p.max_message_bytes, p.required_acks, p.compression) == (1_000_000, 1, "none")
    assert p.linger.seconds == 0.01 and cfg.timeout.seconds == 5.0
    assert cfg.sending_queue.enabled and cfg.retry_on_failure.enabled
    # and the defaults survive a round trip through print-config
    assert exporter_cfg(to_builtins(cfg)) == cfg


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"brokers": ["nohost"]}, "exporters::kafka::brokers: invalid broker 'nohost'"),
        ({"topic": "has space"}, "exporters::kafka::topic: 'has space' is not a valid"),
        ({"topic_prefix": "x."}, "exporters::kafka::topic_prefix: needs topic_from_attribute"),
        ({"producer": {"compression": "brotli"}}, "exporters::kafka::producer::compression"),
        ({"producer": {"required_acks": 2}}, "exporters::kafka::producer::required_acks"),
        ({"encoding": "jaeger_proto"}, "exporters::kafka::encoding"),
        ({"tls": {"server_name_override": "x"}}, "server_name_override: not supported"),
        (
            {"auth": {"sasl": {"username": "u", "password": "p", "mechanism": "GSSAPI"}}},
            "mechanism",
        ),
    ],
)
def test_exporter_errors_name_the_field(raw, expected):
    _, errs = decode(raw, KafkaExporterConfig, "exporters::kafka")
    assert any(expected in e for e in errs), errs


def test_exporter_newer_traces_block_wins():
    cfg = exporter_cfg({"topic": "old", "traces": {"topic": "new", "encoding": "otlp_json"}})
    assert (cfg.effective_topic, cfg.effective_encoding) == ("new", "otlp_json")


def test_producer_options_map_onto_aiokafka():
    exp = KafkaExporter(
        settings("exporter", "kafka"),
        exporter_cfg(
            {
                "brokers": ["k1:9092", "k2:9092"],
                "client_id": "sidecar",
                "producer": {
                    "required_acks": -1,
                    "compression": "zstd",
                    "linger": "25ms",
                    "max_message_bytes": 50_000,
                },
                "timeout": "2s",
                "auth": {"sasl": {"username": "u", "password": "p", "mechanism": "SCRAM-SHA-512"}},
            }
        ),
    )
    kw = exp.producer_kwargs()
    assert kw["bootstrap_servers"] == ["k1:9092", "k2:9092"] and kw["client_id"] == "sidecar"
    assert kw["acks"] == "all" and kw["compression_type"] == "zstd" and kw["linger_ms"] == 25
    assert kw["max_batch_size"] == kw["max_request_size"] == 50_000
    assert kw["request_timeout_ms"] == 2000 and kw["enable_idempotence"] is False
    assert kw["security_protocol"] == "SASL_PLAINTEXT" and kw["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (kw["sasl_plain_username"], kw["sasl_plain_password"]) == ("u", "p")


def test_tls_and_sasl_pick_the_security_protocol():
    sasl = kafkaclient.AuthConfig(sasl=kafkaclient.SASLConfig(username="u", password="p"))
    tls_cfg = exporter_cfg({"tls": {"insecure_skip_verify": True}}).tls
    kw = kafkaclient.client_kwargs(["k:1"], "c", tls_cfg, sasl)
    assert kw["security_protocol"] == "SASL_SSL" and kw["sasl_mechanism"] == "PLAIN"
    assert isinstance(kw["ssl_context"], ssl.SSLContext)
    assert kw["ssl_context"].verify_mode == ssl.CERT_NONE
    kw = kafkaclient.client_kwargs(["k:1"], "c", tls_cfg, None)
    assert kw["security_protocol"] == "SSL"
    plain = exporter_cfg({"tls": {"insecure": True}}).tls
    kw = kafkaclient.client_kwargs(["k:1"], "c", plain, None)
    assert "security_protocol" not in kw and "ssl_context" not in kw


def test_receiver_defaults_are_the_otel_collectors():
    cfg = receiver_cfg({})
    assert cfg.effective_topics == ["otlp_spans"] and cfg.effective_encoding == "otlp_proto"
    assert cfg.group_id == cfg.client_id == "otel-collector"
    assert cfg.initial_offset == "latest"
    assert cfg.session_timeout.seconds == 10 and cfg.heartbeat_interval.seconds == 3
    assert cfg.autocommit.enable and cfg.autocommit.interval.seconds == 1
    assert cfg.message_marking.after and not cfg.message_marking.on_error
    assert receiver_cfg(to_builtins(cfg)) == cfg
    kw = KafkaReceiver(settings("receiver", "kafka"), cfg, Sink()).consumer_kwargs()
    assert kw["enable_auto_commit"] is False and kw["auto_offset_reset"] == "latest"
    assert kw["session_timeout_ms"] == 10_000 and kw["heartbeat_interval_ms"] == 3000


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"topics": ["^a.*", "b"]}, "topics: a regular expression (^...) must be the only topic"),
        ({"topics": ["^(unclosed"]}, "topics: invalid regular expression"),
        ({"topics": ["a"], "dead_letter_topic": "a"}, "dead_letter_topic: must not be one of"),
        ({"message_marking": {"after": False}}, "message_marking::after: only `after: true`"),
        ({"heartbeat_interval": "20s"}, "heartbeat_interval: must be shorter"),
        ({"initial_offset": "oldest"}, "receivers::kafka::initial_offset"),
        ({"topic": "a", "traces": {"topics": ["b"]}}, "topic: set either topic or traces::topics"),
    ],
)
def test_receiver_errors_name_the_field(raw, expected):
    _, errs = decode(raw, KafkaReceiverConfig, "receivers::kafka")
    assert any(expected in e for e in errs), errs


def test_receiver_topic_forms():
    assert receiver_cfg({"topic": "one"}).effective_topics == ["one"]
    assert receiver_cfg({"traces": {"topics": ["a", "b"]}}).effective_topics == ["a", "b"]


async def test_lifecycle_without_a_broker():
    """Shutdown without start is harmless; with Kafka unreachable, start still succeeds
    (the client connects in the background) and shutdown does not hang."""
    port = free_port()  # nothing listens here
    exp_cfg = exporter_cfg({"brokers": [f"127.0.0.1:{port}"], "sending_queue": {"enabled": False}})
    rcv_cfg = receiver_cfg({"brokers": [f"127.0.0.1:{port}"]})
    await KafkaExporter(settings("exporter", "kafka"), exp_cfg).shutdown()
    await KafkaReceiver(settings("receiver", "kafka"), rcv_cfg, Sink()).shutdown()

    loop = asyncio.get_running_loop()
    host = FakeHost(deadline=loop.time() + 2)
    exp = KafkaExporter(
        settings("exporter", "kafka"),
        exporter_cfg(
            {**to_builtins(exp_cfg), "timeout": "200ms", "retry_on_failure": {"enabled": False}}
        ),
    )
    rcv = KafkaReceiver(settings("receiver", "kafka"), rcv_cfg, Sink())
    await exp.start(host)
    await rcv.start(host)
    batch: Traces = make_traces([make_span("s", b"\x01" * 16, b"\x02" * 8)])
    with pytest.raises(RefusedError):
        await exp.consume_traces(batch)  # no queue, no Kafka: the caller is told to retry
    t0 = loop.time()
    await rcv.shutdown()
    await exp.shutdown()
    assert loop.time() - t0 < 5


def test_partitioner_matches_kafkas_default():
    """Same key -> same partition as aiokafka's (the Java client's) default partitioner,
    so other producers writing the topic keep a trace on one partition."""
    import random

    from aiokafka.partitioner import DefaultPartitioner
    from aiokafka.partitioner import murmur2 as reference

    rnd = random.Random(7)
    for n in [*range(40), 64]:
        data = rnd.randbytes(n)
        assert kafkaclient.murmur2(data) == reference(data)
        parts = list(range(rnd.randint(1, 12)))
        assert kafkaclient.partitioner(data, parts, parts) == DefaultPartitioner()(
            data, parts, parts
        )


# -- SASL and TLS --------------------------------------------------------------------------
# Tansu (the test broker) cannot create SASL users nor serve TLS in this build, so these
# check the mapping onto aiokafka's client and, for TLS, the context in a real handshake.


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
@pytest.mark.parametrize("with_tls", [False, True])
async def test_sasl_maps_onto_aiokafka_and_aiokafka_accepts_it(mechanism, with_tls):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    common: dict = {
        "brokers": ["k1:9092"],
        "auth": {"sasl": {"username": "svc", "password": "s3cret", "mechanism": mechanism}},
    }
    if with_tls:
        common["tls"] = {}
    exp = KafkaExporter(settings("exporter", "kafka"), exporter_cfg(common))
    rcv = KafkaReceiver(settings("receiver", "kafka"), receiver_cfg(common), Sink())
    for kw in (exp.producer_kwargs(), rcv.consumer_kwargs()):
        assert kw["security_protocol"] == ("SASL_SSL" if with_tls else "SASL_PLAINTEXT")
        assert kw["sasl_mechanism"] == mechanism
        assert (kw["sasl_plain_username"], kw["sasl_plain_password"]) == ("svc", "s3cret")
        assert ("ssl_context" in kw) == with_tls
    # aiokafka checks protocol, mechanism, credentials and context when a client is made
    # (no connection yet); a wrong combination raises here
    producer = AIOKafkaProducer(**exp.producer_kwargs())
    consumer = AIOKafkaConsumer(**rcv.consumer_kwargs())
    await producer.stop()
    await consumer.stop()


def test_sasl_credentials_from_files_and_the_environment(tmp_path, monkeypatch):
    from pipeline import config as config_mod
    from pipeline.registry import REGISTRY

    (tmp_path / "password").write_text("from-a-file\n")  # as `echo ... >` writes it
    monkeypatch.setenv("TS_KAFKA_USER", "from-env")
    path = tmp_path / "c.yaml"
    path.write_text(
        """
receivers:
  kafka:
    brokers: [k1:9092]
    auth:
      sasl: {username: "${env:TS_KAFKA_USER}", password_file: PW, mechanism: SCRAM-SHA-256}
exporters:
  debug:
service:
  pipelines:
    traces: {receivers: [kafka], exporters: [debug]}
""".replace("PW", str(tmp_path / "password"))
    )
    cfg = config_mod.load([str(path)], REGISTRY)
    (rcv_cfg,) = cfg.components["receiver"].values()
    kw = KafkaReceiver(settings("receiver", "kafka"), rcv_cfg, Sink()).consumer_kwargs()
    assert (kw["sasl_plain_username"], kw["sasl_plain_password"]) == ("from-env", "from-a-file")
    assert kw["sasl_mechanism"] == "SCRAM-SHA-256"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"sasl": {"password": "p"}}, "auth::sasl::username: set exactly one of username"),
        ({"sasl": {"username": "u"}}, "auth::sasl::password: set exactly one of password"),
        (
            {"sasl": {"username": "u", "password": "p", "password_file": "/etc/hostname"}},
            "auth::sasl::password: set exactly one of password, password_file",
        ),
        ({"sasl": {"username": "", "password": "p"}}, "auth::sasl::username: is empty"),
        (
            {"sasl": {"username": "u", "password_file": "/nonexistent/pw"}},
            "auth::sasl::password_file: cannot read '/nonexistent/pw'",
        ),
        ({"sasl": {"username": "u", "password": "p", "mechanism": "scram"}}, "mechanism"),
    ],
)
@pytest.mark.parametrize("kind", ["exporters", "receivers"])
def test_bad_sasl_is_refused_with_its_path(kind, raw, expected):
    type_ = KafkaExporterConfig if kind == "exporters" else KafkaReceiverConfig
    _, errs = decode({"auth": raw}, type_, f"{kind}::kafka")
    assert any(e.startswith(f"{kind}::kafka::") and expected in e for e in errs), errs


@pytest.mark.parametrize(
    ("tls", "expected"),
    [
        (
            {"insecure": True, "ca_file": "CA"},
            "tls::insecure: true means plaintext (no TLS), so ca_file",
        ),
        ({"insecure": True, "insecure_skip_verify": True}, "so insecure_skip_verify would be"),
        ({"cert_file": "CERT"}, "tls: cert_file and key_file must be set together"),
        ({"ca_file": "/nonexistent/ca.crt"}, "tls::ca_file: cannot read '/nonexistent/ca.crt'"),
        ({"server_name_override": "k"}, "tls::server_name_override: not supported"),
    ],
)
@pytest.mark.parametrize("kind", ["exporters", "receivers"])
def test_bad_tls_is_refused_with_its_path(kind, tls, expected, tmp_path):
    from tests.pipeline.certs import CA

    ca = CA(str(tmp_path), "kafka")
    client = ca.issue("client", server=False)
    tls = {
        k: {"CA": ca.file, "CERT": client.cert}.get(v, v) if isinstance(v, str) else v
        for k, v in tls.items()
    }
    type_ = KafkaExporterConfig if kind == "exporters" else KafkaReceiverConfig
    _, errs = decode({"tls": tls}, type_, f"{kind}::kafka")
    assert any(e.startswith(f"{kind}::kafka::") and expected in e for e in errs), errs


def _handshake(ctx: ssl.SSLContext, server: object, client_ca: str) -> str:
    """A TLS handshake of `ctx` against a server requiring client certificates of
    `client_ca`: "ok" or the error."""
    import socket
    import threading

    srv_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    srv_ctx.load_cert_chain(server.cert, server.key)  # type: ignore[attr-defined]
    srv_ctx.load_verify_locations(client_ca)
    srv_ctx.verify_mode = ssl.CERT_REQUIRED
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with srv_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
                tls.sendall(b"y")
        except (ssl.SSLError, OSError):
            pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.sendall(b"x")
            reply = tls.recv(1)
        return "ok" if reply == b"y" else "no reply"
    except (ssl.SSLError, OSError) as exc:
        return str(exc)
    finally:
        t.join(5)
        listener.close()


def test_tls_files_become_the_ssl_context(tmp_path):
    """ca_file verifies the broker, cert_file/key_file answer a broker that asks for a
    client certificate (mTLS); checked by real handshakes with test-made certificates."""
    from tests.pipeline.certs import CA

    ca, other = CA(str(tmp_path), "kafka"), CA(str(tmp_path), "other")
    broker = ca.issue("localhost", server=True)
    client = ca.issue("gateway", server=False)
    tls = {"ca_file": ca.file, "cert_file": client.cert, "key_file": client.key}
    kw = KafkaExporter(settings("exporter", "kafka"), exporter_cfg({"tls": tls})).producer_kwargs()
    assert kw["security_protocol"] == "SSL"
    ctx = kw["ssl_context"]
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert _handshake(ctx, broker, ca.file) == "ok"
    # a broker whose certificate another CA signed is refused
    impostor = other.issue("localhost", server=True)
    assert "certificate verify failed" in _handshake(ctx, impostor, ca.file)
    # without the client certificate, a broker that requires one refuses us
    no_cert = KafkaExporter(
        settings("exporter", "kafka"), exporter_cfg({"tls": {"ca_file": ca.file}})
    ).producer_kwargs()["ssl_context"]
    assert _handshake(no_cert, broker, ca.file) != "ok"
    # insecure_skip_verify: the broker's certificate is not checked
    skip = exporter_cfg({"tls": {**tls, "insecure_skip_verify": True}}).tls
    assert skip is not None
    assert _handshake(kafkaclient.ssl_context(skip), impostor, ca.file) == "ok"
