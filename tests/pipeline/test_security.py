"""Security: loopback by default, TLS and mTLS on both receivers and both OTLP exporters,
bearer tokens on the receivers. Certificates are made by the test (tests.pipeline.certs)."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
from asyncio import to_thread

import grpc
import httpx
import pytest
import yaml

from benchmarks.loadgen import RequestBuilder, read_proto_file, span_ids
from pipeline.testing import until, wait_for
from tests.pipeline.certs import CA, read
from tests.pipeline.faults import metric_sum, metrics

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):  # type: ignore[no-untyped-def]
    d = str(tmp_path_factory.mktemp("pki"))
    good, other = CA(d, "good"), CA(d, "other")
    return {
        "ca": good,
        "other_ca": other,
        "server": good.issue("server", server=True),
        "client": good.issue("client", server=False),
        "rogue_client": other.issue("client", server=False),
        "rogue_server": other.issue("server", server=True),
    }


def export_grpc(target: str, creds=None, metadata=None, body=None):  # type: ignore[no-untyped-def]
    """One Export call; returns the status code (OK or the error)."""
    body = body if body is not None else RequestBuilder(3, tag=7).next()[0]
    channel = grpc.insecure_channel(target) if creds is None else grpc.secure_channel(target, creds)
    try:
        channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)(
            body, timeout=5, metadata=metadata
        )
        return grpc.StatusCode.OK
    except grpc.RpcError as err:
        return err.code()
    finally:
        channel.close()


def creds(pki, *, client: str | None = "client", ca: str = "ca"):  # type: ignore[no-untyped-def]
    pair = pki[client] if client else None
    return grpc.ssl_channel_credentials(
        root_certificates=read(pki[ca].file),
        private_key=read(pair.key) if pair else None,
        certificate_chain=read(pair.cert) if pair else None,
    )


def https_ctx(pki, *, client: str | None = "client", ca: str = "ca") -> ssl.SSLContext:  # type: ignore[no-untyped-def]
    ctx = ssl.create_default_context(cafile=pki[ca].file)
    if client:
        ctx.load_cert_chain(pki[client].cert, pki[client].key)
    return ctx


def post(url: str, ctx: ssl.SSLContext | bool, headers: dict[str, str] | None = None) -> int:
    body = RequestBuilder(3, tag=8).next()[0]
    try:
        r = httpx.post(
            url,
            content=body,
            headers={"Content-Type": "application/x-protobuf", **(headers or {})},
            verify=ctx,
            timeout=5,
        )
    except httpx.HTTPError:
        return -1  # refused before any HTTP exchange (TLS handshake)
    return r.status_code


def file_pipeline(receiver: dict, out: str) -> dict:
    return {
        "receivers": {"otlp": receiver},
        "exporters": {"file": {"path": out, "format": "proto", "flush_interval": 0}},
        "service": {
            "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["file"]}},
            "telemetry": {"metrics": {"address": "127.0.0.1:0"}},
        },
    }


# -- loopback by default ----------------------------------------------------------------------


def test_everything_listens_on_loopback_by_default(tmp_path):
    cfg = {
        "receivers": {"otlp": {"protocols": {"grpc": None, "http": None}}},
        "exporters": {"debug": {}},
        "extensions": {"health_check": {}},
        "service": {
            "extensions": ["health_check"],
            "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["debug"]}},
        },
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = subprocess.run(
        [sys.executable, "-m", "pipeline", "print-config", "--config", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    resolved = yaml.safe_load(out)
    protocols = resolved["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"] == "127.0.0.1:4317"
    assert protocols["http"]["endpoint"] == "127.0.0.1:4318"
    assert resolved["extensions"]["health_check"]["endpoint"] == "127.0.0.1:13133"
    metrics_cfg = resolved["service"]["telemetry"]["metrics"]
    assert metrics_cfg.get("address") in (None, "127.0.0.1:8888")  # unset: left out


def _non_loopback_ip() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") else str(ip)


def test_a_loopback_receiver_is_not_reachable_from_other_interfaces(tmp_path, collector_factory):
    ip = _non_loopback_ip()
    if ip is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    c = collector_factory(
        file_pipeline(
            {
                "protocols": {
                    "grpc": {"endpoint": "127.0.0.1:0"},
                    "http": {"endpoint": "127.0.0.1:0"},
                }
            },
            str(tmp_path / "out.bin"),
        )
    )
    for key in ("receivers::otlp/grpc", "receivers::otlp/http"):
        port = int(c.endpoints[key].rsplit(":", 1)[1])
        with socket.socket() as s:
            s.settimeout(2)
            assert s.connect_ex((ip, port)) != 0, f"{key} answers on {ip}"
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) == 0


# -- TLS and mTLS on the receivers ----------------------------------------------------------------


async def test_mtls_receivers_accept_known_clients_and_refuse_the_rest(
    tmp_path, service_factory, pki
):
    tls = {
        "cert_file": pki["server"].cert,
        "key_file": pki["server"].key,
        "client_ca_file": pki["ca"].file,
    }
    out = str(tmp_path / "out.bin")
    c = await service_factory(
        file_pipeline(
            {
                "protocols": {
                    "grpc": {"endpoint": "127.0.0.1:0", "tls": tls},
                    "http": {"endpoint": "127.0.0.1:0", "tls": tls},
                }
            },
            out,
        )
    )
    # (the collector runs in this event loop: the blocking clients run in a thread)
    g = c.endpoints["receivers::otlp/grpcs"]  # announced as grpcs:// and https://
    OK, UNAVAILABLE = grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE
    assert await to_thread(export_grpc, g, creds(pki)) == OK  # mTLS: accepted
    assert await to_thread(export_grpc, g, creds(pki, client=None)) == UNAVAILABLE  # no cert
    rogue = creds(pki, client="rogue_client")
    assert await to_thread(export_grpc, g, rogue) == UNAVAILABLE  # wrong CA
    untrusted = creds(pki, ca="other_ca")
    assert await to_thread(export_grpc, g, untrusted) == UNAVAILABLE  # server not trusted
    assert await to_thread(export_grpc, g) == UNAVAILABLE  # plaintext
    url = f"https://{c.endpoints['receivers::otlp/https']}/v1/traces"
    assert await to_thread(post, url, https_ctx(pki)) == 200
    assert await to_thread(post, url, https_ctx(pki, client=None)) == -1
    assert await to_thread(post, url, https_ctx(pki, client="rogue_client")) == -1
    assert await to_thread(post, url, https_ctx(pki, ca="other_ca")) == -1
    assert await to_thread(post, url.replace("https://", "http://"), False) == -1
    assert await until(lambda: len(span_ids(read_proto_file(out))) == 6)  # the two accepted


async def test_tls_without_client_certificates(tmp_path, service_factory, pki):
    tls = {"cert_file": pki["server"].cert, "key_file": pki["server"].key}
    c = await service_factory(
        file_pipeline(
            {"protocols": {"grpc": {"endpoint": "127.0.0.1:0", "tls": tls}}},
            str(tmp_path / "out.bin"),
        )
    )
    g = c.endpoints["receivers::otlp/grpcs"]
    no_cert = creds(pki, client=None)
    assert await to_thread(export_grpc, g, no_cert) == grpc.StatusCode.OK
    untrusted = creds(pki, client=None, ca="other_ca")
    assert await to_thread(export_grpc, g, untrusted) == grpc.StatusCode.UNAVAILABLE


# -- bearer tokens ----------------------------------------------------------------------------


def test_bearer_token_from_env_and_file(tmp_path, collector_factory):
    token_file = tmp_path / "token"
    token_file.write_text("file-token\n")
    c = collector_factory(
        file_pipeline(
            {
                "protocols": {
                    "grpc": {
                        "endpoint": "127.0.0.1:0",
                        "auth": {"bearer_token": "${env:TS_TEST_TOKEN}"},
                    },
                    "http": {
                        "endpoint": "127.0.0.1:0",
                        "auth": {"bearer_token_file": str(token_file)},
                    },
                }
            },
            str(tmp_path / "out.bin"),
        ),
        env={"TS_TEST_TOKEN": TOKEN},
    )
    g = c.endpoints["receivers::otlp/grpc"]
    U = grpc.StatusCode.UNAUTHENTICATED
    assert export_grpc(g) == U
    assert export_grpc(g, metadata=(("authorization", "Bearer wrong"),)) == U
    assert export_grpc(g, metadata=(("authorization", "Basic " + TOKEN),)) == U
    assert export_grpc(g, metadata=(("authorization", f"Bearer {TOKEN}"),)) == grpc.StatusCode.OK
    url = f"http://{c.endpoints['receivers::otlp/http']}/v1/traces"
    r = httpx.post(url, content=b"", headers={"Content-Type": "application/x-protobuf"})
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    assert post(url, False, {"Authorization": "Bearer wrong"}) == 401
    assert post(url, False, {"Authorization": "Bearer file-token"}) == 200
    token_file.write_text("rotated")  # a new token is picked up without a restart
    os.utime(token_file, (1, 1))
    assert post(url, False, {"Authorization": "Bearer file-token"}) == 401
    assert post(url, False, {"Authorization": "Bearer rotated"}) == 200
    m = metrics(c)
    assert (
        metric_sum(m, "otelcol_receiver_requests", outcome="unauthenticated", transport="grpc") == 3
    )
    assert (
        metric_sum(m, "otelcol_receiver_requests", outcome="unauthenticated", transport="http") == 3
    )
    assert metric_sum(m, "otelcol_receiver_accepted_spans") == 9


# -- exporters over TLS, between two collectors ------------------------------------------------


def test_tls_exporters_to_a_tls_receiver_with_token(tmp_path, collector_factory, pki):
    out = str(tmp_path / "backend.bin")
    server_tls = {
        "cert_file": pki["server"].cert,
        "key_file": pki["server"].key,
        "client_ca_file": pki["ca"].file,
    }
    auth = {"bearer_token": TOKEN}
    (tmp_path / "backend").mkdir()
    (tmp_path / "middle").mkdir()
    backend = collector_factory(
        file_pipeline(
            {
                "protocols": {
                    "grpc": {"endpoint": "127.0.0.1:0", "tls": server_tls, "auth": auth},
                    "http": {"endpoint": "127.0.0.1:0", "tls": server_tls, "auth": auth},
                }
            },
            out,
        ),
        workdir=str(tmp_path / "backend"),
    )
    client_tls = {
        "ca_file": pki["ca"].file,
        "cert_file": pki["client"].cert,
        "key_file": pki["client"].key,
    }
    headers = {"authorization": "Bearer ${env:TS_TEST_TOKEN}"}
    retry = {"initial_interval": "100ms", "max_elapsed_time": "10s"}
    middle = collector_factory(
        {
            "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
            "exporters": {
                "otlp_grpc": {
                    "endpoint": backend.endpoints["receivers::otlp/grpcs"],
                    "tls": client_tls,
                    "headers": headers,
                    "retry_on_failure": retry,
                },
                "otlp_http": {
                    "endpoint": f"https://{backend.endpoints['receivers::otlp/https']}",
                    "tls": client_tls,
                    "headers": headers,
                    "retry_on_failure": retry,
                },
            },
            "service": {
                "pipelines": {
                    "traces": {"receivers": ["otlp"], "exporters": ["otlp_grpc", "otlp_http"]}
                },
                "telemetry": {"metrics": {"address": "127.0.0.1:0"}},
            },
        },
        workdir=str(tmp_path / "middle"),
        env={"TS_TEST_TOKEN": TOKEN},
    )
    builder = RequestBuilder(5, tag=11)
    sent: set[int] = set()
    for _ in range(4):
        body, ids = builder.next()
        assert (
            export_grpc(middle.endpoints["receivers::otlp/grpc"], body=body) == grpc.StatusCode.OK
        )
        sent.update(ids)
    # each span arrives twice: once over gRPC, once over HTTP, both TLS with a client cert
    assert wait_for(lambda: sum(span_ids(read_proto_file(out)).values()) == 2 * len(sent))
    got = span_ids(read_proto_file(out))
    assert set(got) == sent and set(got.values()) == {2}
    m = metrics(backend)
    assert metric_sum(m, "otelcol_receiver_accepted_spans", transport="grpc") == len(sent)
    assert metric_sum(m, "otelcol_receiver_accepted_spans", transport="http") == len(sent)
    assert metric_sum(metrics(middle), "otelcol_exporter_send_failed_spans") == 0
