"""TLS on both sides: the receiver serves gRPC and HTTPS with a certificate (and mTLS
with `client_ca_file`); the OTLP exporters verify it with `tls.ca_file`."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pipeline.testing import (
    export_grpc,
    read_json_lines,
    sample_request,
    span_index,
    spans_in,
    wait_for,
)

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def _cert(
    subject: str, issuer_key: Any, issuer: x509.Name | None, ca: bool
) -> tuple[Any, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    return key, cert


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("pki")
    ca_key, ca = _cert("test-ca", None, None, ca=True)
    files: dict[str, Path] = {}

    def write(name: str, key: Any, cert: x509.Certificate) -> None:
        files[f"{name}.key"] = d / f"{name}.key"
        files[f"{name}.crt"] = d / f"{name}.crt"
        files[f"{name}.key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        files[f"{name}.crt"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    write("ca", ca_key, ca)
    write("server", *_cert("localhost", ca_key, ca.subject, ca=False))
    write("client", *_cert("client", ca_key, ca.subject, ca=False))
    return files


def tls_receiver(out: str, pki: dict[str, Path], mtls: bool = False) -> dict[str, Any]:
    tls: dict[str, Any] = {"cert_file": str(pki["server.crt"]), "key_file": str(pki["server.key"])}
    if mtls:
        tls["client_ca_file"] = str(pki["ca.crt"])
    return {
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": "127.0.0.1:0", "tls": tls},
                    "http": {"endpoint": "127.0.0.1:0", "tls": tls},
                }
            }
        },
        "exporters": {"file": {"path": out, "flush_interval": 0}},
        "service": {
            "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["file"]}},
            "telemetry": {"metrics": {"level": "none"}},
        },
    }


def test_tls_receiver_and_exporters(collector_factory, tmp_path, pki):
    out = str(tmp_path / "b.jsonl")
    b = collector_factory(tls_receiver(out, pki))
    ca = {"ca_file": str(pki["ca.crt"])}
    plain = {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}
    a = collector_factory(
        {
            "receivers": {"otlp/g": plain, "otlp/h": plain},
            "exporters": {
                "otlp_grpc/tls": {"endpoint": b.endpoints["receivers::otlp/grpcs"], "tls": ca},
                "otlp_http/tls": {
                    "endpoint": f"https://{b.endpoints['receivers::otlp/https']}",
                    "tls": ca,
                },
            },
            "service": {
                "pipelines": {
                    "traces/grpc": {"receivers": ["otlp/g"], "exporters": ["otlp_grpc/tls"]},
                    "traces/http": {"receivers": ["otlp/h"], "exporters": ["otlp_http/tls"]},
                },
                "telemetry": {"metrics": {"level": "none"}},
            },
        }
    )
    for rid, seed in (("otlp/g", 1), ("otlp/h", 4)):
        export_grpc(a.endpoints[f"receivers::{rid}/grpc"], sample_request(seed, 10))
    assert wait_for(lambda: len(spans_in(read_json_lines(out))) >= 20)
    assert a.stop() == 0

    # HTTPS straight to the receiver, verified with the CA
    ctx = ssl.create_default_context(cafile=str(pki["ca.crt"]))
    req = urllib.request.Request(
        f"https://{b.endpoints['receivers::otlp/https']}/v1/traces",
        data=sample_request(2, 5).SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
        assert resp.status == 200
    assert wait_for(lambda: len(spans_in(read_json_lines(out))) >= 25)
    sent = [sample_request(1, 10), sample_request(4, 10), sample_request(2, 5)]
    assert span_index(read_json_lines(out)) == span_index(sent)


def test_mtls_requires_a_client_certificate(collector_factory, tmp_path, pki):
    b = collector_factory(tls_receiver(str(tmp_path / "o.jsonl"), pki, mtls=True))
    ep = b.endpoints["receivers::otlp/grpcs"]
    body = sample_request(3, 2).SerializeToString()
    ca = pki["ca.crt"].read_bytes()
    with grpc.secure_channel(ep, grpc.ssl_channel_credentials(root_certificates=ca)) as ch:
        with pytest.raises(grpc.RpcError) as exc:
            ch.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)(
                body, timeout=5
            )
        assert exc.value.code() == grpc.StatusCode.UNAVAILABLE  # the handshake fails
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=pki["client.key"].read_bytes(),
        certificate_chain=pki["client.crt"].read_bytes(),
    )
    with grpc.secure_channel(ep, creds) as ch:
        ch.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)(body, timeout=5)
    # HTTPS without a client certificate is refused in the handshake
    ctx = ssl.create_default_context(cafile=str(pki["ca.crt"]))
    req = urllib.request.Request(
        f"https://{b.endpoints['receivers::otlp/https']}/v1/traces",
        data=body,
        headers={"Content-Type": "application/x-protobuf"},
    )
    with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
        urllib.request.urlopen(req, context=ctx, timeout=5).read()
    ctx.load_cert_chain(str(pki["client.crt"]), str(pki["client.key"]))
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
        assert resp.status == 200
