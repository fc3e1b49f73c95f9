"""A Collector user's config works as it is (issue 33): every file of
`tests/testdata/collector_compat/` loads and a collector starts and stops from it; then
what the new options do, through the CLI where it matters: CORS, unix sockets, client
metadata into attributes and batches, exporter-side batching, the file exporter's zstd
and rotation, the debug exporter's sampling and outputs, the health check's pipeline
check and bodies, the oauth2client token source."""

from __future__ import annotations

import asyncio
import datetime
import os
import shutil
import struct
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import zstandard
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline import config as config_mod
from pipeline.configtypes import decode
from pipeline.exporters.debug import Sampler
from pipeline.exporters.file import FileExporter, FileExporterConfig
from pipeline.extensions.oauth2client import OAuth2Client, OAuth2ClientConfig
from pipeline.graph import Graph
from pipeline.registry import REGISTRY
from pipeline.service import Service
from pipeline.telemetry import Telemetry
from pipeline.testing import (
    FakeHost,
    OTLPServer,
    attrs,
    export_grpc,
    make_span,
    make_traces,
    read_json_lines,
    settings,
    spans_in,
    wait_for,
)
from tests.pipeline.certs import CA

CORPUS = Path(__file__).parent.parent / "testdata" / "collector_compat"
FILES = sorted(p.name for p in CORPUS.glob("*.yaml"))

# what loading each file must warn about (tracesieve carries traces only; unset vars)
WARNINGS: dict[str, list[str]] = {
    "attributes.yaml": ["attributes/for_logs::include::log_bodies", "service::pipelines::logs"],
    "kafka.yaml": ["exporters::kafka::logs", "receivers::kafka::logs"],
    "otlp_exporters.yaml": ["exporters::otlp_http/backend::metrics_endpoint"],
    "otlp_receiver.yaml": ["receivers::otlp::protocols::http::metrics_url_path"],
    "other_signals.yaml": [
        "environment variable 'COMPAT_UNSET_SUFFIX' is not set",
        "service::pipelines::metrics, service::pipelines::logs, receivers::hostmetrics, "
        "processors::resourcedetection, exporters::prometheus",
    ],
}


@pytest.fixture(scope="module")
def compat_env() -> Iterator[dict[str, str]]:
    """A short directory (unix socket paths are limited) with certificates in it."""
    d = tempfile.mkdtemp(prefix="cc-", dir="/tmp")
    ca = CA(d, "compat")
    pair = ca.issue("localhost", server=True)
    shutil.copy(ca.file, os.path.join(d, "ca.crt"))
    shutil.copy(pair.cert, os.path.join(d, "server.crt"))
    shutil.copy(pair.key, os.path.join(d, "server.key"))
    yield {"COMPAT_DIR": d, "COMPAT_CERTS": d}
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def env(compat_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for k, v in compat_env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("COMPAT_UNSET_SUFFIX", raising=False)
    monkeypatch.setenv("TRACESIEVE_GC_FREEZE", "0")  # in-process: leave the GC alone
    return compat_env


def test_the_corpus_covers_every_component() -> None:
    text = "".join((CORPUS / f).read_text() for f in FILES)
    for component in (
        "otlp:",
        "batch:",
        "memory_limiter:",
        "groupbytrace:",
        "attributes/",
        "otlp_grpc/",
        "otlp_http/",
        "debug:",
        "file/",
        "kafka:",
        "routing:",
        "forward:",
        "health_check:",
    ):
        assert component in text, component


@pytest.mark.parametrize("name", FILES)
async def test_each_config_loads_and_runs(name: str, env: dict[str, str]) -> None:
    cfg = config_mod.load([str(CORPUS / name)], REGISTRY)
    Graph(cfg, REGISTRY, Telemetry())  # what `validate` builds
    for expected in WARNINGS.get(name, []):
        assert any(expected in w for w in cfg.warnings), (expected, cfg.warnings)
    if name not in WARNINGS:
        assert cfg.warnings == []
    service = Service(cfg, REGISTRY)
    await service.start()
    try:
        assert service.is_ready()
    finally:
        await service.shutdown()


# -- the otlp receiver ---------------------------------------------------------------------


def http(
    url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def one_request(name: str = "op", **attributes: Any) -> bytes:
    return make_traces(
        [make_span(name, os.urandom(16), os.urandom(8), attributes=attributes)]
    ).to_bytes()


def test_cors_url_path_and_response_headers(tmp_path, collector_factory):
    out = str(tmp_path / "spans.jsonl")
    c = collector_factory(
        {
            "receivers": {
                "otlp": {
                    "protocols": {
                        "http": {
                            "endpoint": "127.0.0.1:0",
                            "traces_url_path": "ingest/spans",
                            "response_headers": {"x-served-by": "sieve"},
                            "cors": {
                                "allowed_origins": ["https://*.agents.example"],
                                "allowed_headers": ["X-Agent-Run"],
                                "max_age": 600,
                            },
                        }
                    }
                }
            },
            "exporters": {"file": {"path": out, "flush_interval": 0}},
            "service": {
                "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["file"]}},
                "telemetry": {"metrics": {"level": "none"}},
            },
        }
    )
    base = f"http://{c.endpoints['receivers::otlp/http']}"
    url = f"{base}/ingest/spans"
    # a browser's preflight from an allowed origin
    status, headers, _ = http(
        url,
        "OPTIONS",
        headers={
            "Origin": "https://ui.agents.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-agent-run",
        },
    )
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == "https://ui.agents.example"
    assert headers["Access-Control-Allow-Methods"] == "POST"
    assert headers["Access-Control-Allow-Headers"] == "content-type, x-agent-run"
    assert headers["Access-Control-Max-Age"] == "600"
    assert headers["Access-Control-Allow-Credentials"] == "true"
    # from an origin not allowed, or asking for a header not allowed: no CORS headers
    for origin, asked in (
        ("https://evil.example", "content-type"),
        ("https://ui.agents.example", "x-other"),
    ):
        status, headers, _ = http(
            url,
            "OPTIONS",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": asked,
            },
        )
        assert status == 204 and "Access-Control-Allow-Origin" not in headers
    # the request itself: accepted at the path given without its leading /
    status, headers, _ = http(
        url,
        "POST",
        one_request("from-browser"),
        {"Content-Type": "application/x-protobuf", "Origin": "https://ui.agents.example"},
    )
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == "https://ui.agents.example"
    assert headers["x-served-by"] == "sieve"
    status, _, _ = http(
        f"{base}/v1/traces", "POST", one_request(), {"Content-Type": "application/x-protobuf"}
    )
    assert status == 404  # only the configured path
    assert wait_for(lambda: os.path.exists(out) and "from-browser" in Path(out).read_text())


async def test_unix_sockets_for_grpc_and_http(env, collector_factory):
    d = env["COMPAT_DIR"]
    grpc_sock, http_sock = f"{d}/t-grpc.sock", f"{d}/t-http.sock"
    out = f"{d}/unix-spans.jsonl"
    c = collector_factory(
        {
            "receivers": {
                "otlp": {
                    "protocols": {
                        "grpc": {"transport": "unix", "endpoint": grpc_sock},
                        "http": {"transport": "unix", "endpoint": http_sock},
                    }
                }
            },
            "exporters": {"file": {"path": out, "flush_interval": 0}},
            "service": {
                "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["file"]}},
                "telemetry": {"metrics": {"level": "none"}},
            },
        }
    )
    assert "grpc+unix://" in c.output and "http+unix://" in c.output
    await asyncio.to_thread(export_grpc, f"unix:{grpc_sock}", one_request("over-grpc-socket"))
    async with (
        aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=http_sock)) as s,
        s.post(
            "http://localhost/v1/traces",
            data=one_request("over-http-socket"),
            headers={"Content-Type": "application/x-protobuf"},
        ) as resp,
    ):
        assert resp.status == 200
    assert wait_for(
        lambda: (
            os.path.exists(out)
            and {"over-grpc-socket", "over-http-socket"}
            <= {s.name for s in spans_in(read_json_lines(out))}
        )
    )
    assert c.stop() == 0
    assert not os.path.exists(grpc_sock) and not os.path.exists(http_sock)


def test_metadata_into_attributes_and_batches_by_tenant(tmp_path, collector_factory):
    """include_metadata -> attributes from_context stamps the tenant and the peer; the
    batch processor's metadata_keys keeps tenants apart: every batch written holds one."""
    out = str(tmp_path / "spans.jsonl")
    c = collector_factory(
        {
            "receivers": {
                "otlp": {
                    "protocols": {"http": {"endpoint": "127.0.0.1:0", "include_metadata": True}}
                }
            },
            "processors": {
                "attributes": {
                    "actions": [
                        {"key": "tenant", "from_context": "metadata.x-tenant", "action": "insert"},
                        {"key": "peer", "from_context": "client.address", "action": "insert"},
                        {
                            "key": "who",
                            "from_context": "auth.subject",
                            "default_value": "nobody",
                            "action": "insert",
                        },
                    ]
                },
                "batch": {"metadata_keys": ["X-Tenant"], "timeout": "300ms"},
            },
            "exporters": {"file": {"path": out, "flush_interval": 0}},
            "service": {
                "pipelines": {
                    "traces": {
                        "receivers": ["otlp"],
                        "processors": ["attributes", "batch"],
                        "exporters": ["file"],
                    }
                },
                "telemetry": {"metrics": {"level": "none"}},
            },
        }
    )
    url = f"http://{c.endpoints['receivers::otlp/http']}/v1/traces"
    sent = 0
    for i in range(6):
        tenant = "acme" if i % 2 == 0 else "globex"
        status, _, _ = http(
            url,
            "POST",
            one_request(f"{tenant}-{i}"),
            {"Content-Type": "application/x-protobuf", "X-Tenant": tenant},
        )
        assert status == 200
        sent += 1
    assert wait_for(lambda: os.path.exists(out) and len(spans_in(read_json_lines(out))) == sent)
    for batch in read_json_lines(out):
        tenants = {attrs(s)["tenant"] for s in spans_in([batch])}
        assert len(tenants) == 1, tenants  # never mixed
    for s in spans_in(read_json_lines(out)):
        a = attrs(s)
        assert s.name.startswith(a["tenant"])
        assert a["peer"] == "127.0.0.1" and a["who"] == "nobody"


def test_exporter_batching_merges_and_keeps_partitions_apart(collector_factory):
    with OTLPServer() as backend:
        c = collector_factory(
            {
                "receivers": {
                    "otlp": {
                        "protocols": {"grpc": {"endpoint": "127.0.0.1:0", "include_metadata": True}}
                    }
                },
                "processors": {
                    "attributes": {
                        "actions": [
                            {"key": "tenant", "from_context": "x-tenant", "action": "insert"}
                        ]
                    }
                },
                "exporters": {
                    "otlp_grpc": {
                        "endpoint": backend.endpoint,
                        "tls": {"insecure": True},
                        "sending_queue": {
                            "num_consumers": 2,
                            "batch": {
                                "flush_timeout": "2s",
                                "min_size": 6,
                                "partition": {"metadata_keys": ["x-tenant"]},
                            },
                        },
                    }
                },
                "service": {
                    "pipelines": {
                        "traces": {
                            "receivers": ["otlp"],
                            "processors": ["attributes"],
                            "exporters": ["otlp_grpc"],
                        }
                    },
                    "telemetry": {"metrics": {"level": "none"}},
                },
            }
        )
        ep = c.endpoints["receivers::otlp/grpc"]
        for i in range(12):
            tenant = ("acme", "globex")[i % 2]
            export_grpc(ep, one_request(f"{tenant}-{i}"), metadata=(("x-tenant", tenant),))
        assert wait_for(lambda: sum(count(r) for r in backend.requests) == 12)
        assert len(backend.requests) < 12  # merged
        for r in backend.requests:
            tenants = {
                a.value.string_value
                for rs in r.resource_spans
                for ss in rs.scope_spans
                for s in ss.spans
                for a in s.attributes
                if a.key == "tenant"
            }
            assert len(tenants) == 1, tenants


def count(req: ExportTraceServiceRequest) -> int:
    return sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)


# -- the file exporter -----------------------------------------------------------------------


def frames(path: str) -> list[bytes]:
    data = Path(path).read_bytes()
    out, pos = [], 0
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        out.append(data[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return out


@pytest.mark.parametrize("fmt", ["proto", "json"])
async def test_file_zstd_is_one_frame_per_message_with_a_length(tmp_path, fmt):
    path = str(tmp_path / f"out.{fmt}")
    cfg, errs = decode(
        {"path": path, "format": fmt, "compression": "zstd", "flush_interval": 0},
        FileExporterConfig,
        "file",
    )
    assert cfg is not None and not errs
    exp = FileExporter(settings("exporter", "file"), cfg)
    await exp.start(FakeHost())
    batches = [make_traces([make_span(f"s{i}", os.urandom(16), os.urandom(8))]) for i in range(3)]
    for b in batches:
        await exp.consume_traces(b)
    await exp.shutdown()
    got = [zstandard.ZstdDecompressor().decompress(f) for f in frames(path)]
    assert len(got) == 3
    if fmt == "proto":
        names = [
            ExportTraceServiceRequest.FromString(g).resource_spans[0].scope_spans[0].spans[0].name
            for g in got
        ]
    else:
        from pipeline import otlpjson

        names = [otlpjson.decode(g).resource_spans[0].scope_spans[0].spans[0].name for g in got]
    assert names == ["s0", "s1", "s2"]


async def test_file_rotation_names_backups_and_removes_old_ones(tmp_path):
    path = tmp_path / "spans.json"
    # a backup from 10 days ago, and one from yesterday (local time, as localtime: true)
    now = datetime.datetime.now()
    old = now - datetime.timedelta(days=10)
    recent = now - datetime.timedelta(days=1)
    for when in (old, recent):
        stamp = when.strftime("%Y-%m-%dT%H-%M-%S") + ".000"
        (tmp_path / f"spans-{stamp}.json").write_text("old\n")
    cfg, errs = decode(
        {
            "path": str(path),
            "flush_interval": 0,
            "rotation": {"max_megabytes": 1, "max_days": 3, "max_backups": 5, "localtime": True},
        },
        FileExporterConfig,
        "file",
    )
    assert cfg is not None and not errs
    exp = FileExporter(settings("exporter", "file"), cfg)
    await exp.start(FakeHost())
    big = "x" * 4000
    for _ in range(3):  # ~3 x 400 KB: the third write would pass 1 MiB, so it rotates first
        spans = [
            make_span("s", os.urandom(16), os.urandom(8), attributes={"p": big}) for _ in range(100)
        ]
        await exp.consume_traces(make_traces(spans))
    await exp.shutdown()
    backups = sorted(p.name for p in tmp_path.iterdir() if p.name != "spans.json")
    assert len(backups) == 2, backups  # the new one and yesterday's; 10 days old is gone
    assert f"spans-{recent.strftime('%Y-%m-%dT%H-%M-%S')}.000.json" in backups
    new = next(b for b in backups if b != f"spans-{recent.strftime('%Y-%m-%dT%H-%M-%S')}.000.json")
    stamp = datetime.datetime.strptime(new[len("spans-") : -len(".json")], "%Y-%m-%dT%H-%M-%S.%f")
    assert abs((stamp - now).total_seconds()) < 120  # local time, not UTC
    assert path.stat().st_size > 0 and path.stat().st_size < 1 << 20


@pytest.mark.parametrize(("append", "lines"), [(None, 2), (True, 2), (False, 1)])
async def test_file_append(tmp_path, append, lines):
    """`append: false` truncates at start (the Collector's default); not set, tracesieve
    appends, so a restart keeps what an earlier run wrote."""
    path = tmp_path / "spans.jsonl"
    path.write_text("from an earlier run\n")
    raw: dict[str, Any] = {"path": str(path), "flush_interval": 0}
    if append is not None:
        raw["append"] = append
    cfg, _ = decode(raw, FileExporterConfig, "f")
    assert cfg is not None
    exp = FileExporter(settings("exporter", "file"), cfg)
    await exp.start(FakeHost())
    await exp.consume_traces(make_traces([make_span("s", os.urandom(16), os.urandom(8))]))
    await exp.shutdown()
    assert len(path.read_text().splitlines()) == lines


def test_bare_number_durations_are_nanoseconds():
    cfg, errs = decode({"path": "x", "flush_interval": 5}, FileExporterConfig, "f")
    assert cfg is not None and not errs
    assert cfg.flush_interval.seconds == 5e-9


# -- the debug exporter ------------------------------------------------------------------------


def test_debug_sampling_per_second():
    s = Sampler(initial=2, thereafter=3)
    got = [s.allow(now=100.5) for _ in range(10)]
    # the first 2, then every 3rd: entries 1, 2, 5, 8
    assert got == [True, True, False, False, True, False, False, True, False, False]
    assert s.allow(now=101.0)  # a new second starts over


def test_debug_output_paths_and_sampling_through_the_cli(tmp_path, collector_factory):
    log = str(tmp_path / "debug.log")
    c = collector_factory(
        {
            "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
            "exporters": {
                "debug": {
                    "verbosity": "normal",
                    "use_internal_logger": False,
                    "output_paths": [log],
                    "sampling_initial": 1,
                    "sampling_thereafter": 1000,
                }
            },
            "service": {
                "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["debug"]}},
                "telemetry": {"metrics": {"level": "none"}},
            },
        }
    )
    ep = c.endpoints["receivers::otlp/grpc"]
    for i in range(5):
        export_grpc(ep, one_request(f"step-{i}"))
    assert wait_for(lambda: os.path.exists(log) and "step-0" in Path(log).read_text())
    assert c.stop() == 0
    text = Path(log).read_text()
    assert "span 'step-0'" in text
    # within one second only the first entry is written (later ones may fall in the next)
    assert text.count("span 'step-") < 5
    assert "step-" not in c.output  # not in tracesieve's own log


# -- the health check --------------------------------------------------------------------------


def test_health_check_pipeline_check_and_bodies(tmp_path, collector_factory, compat_env):
    certs = compat_env["COMPAT_CERTS"]
    with OTLPServer() as backend:
        backend.fail_with = grpc.StatusCode.INVALID_ARGUMENT  # permanent: counted as failed
        c = collector_factory(
            {
                "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
                "exporters": {
                    "otlp_grpc": {
                        "endpoint": backend.endpoint,
                        "tls": {"insecure": True},
                        "sending_queue": {"enabled": False},
                    }
                },
                "extensions": {
                    "health_check": {
                        "endpoint": "127.0.0.1:0",
                        "path": "/health/status",
                        "tls": {
                            "cert_file": f"{certs}/server.crt",
                            "key_file": f"{certs}/server.key",
                        },
                        "response_body": {"healthy": "up", "unhealthy": "down"},
                        "check_collector_pipeline": {
                            "enabled": True,
                            "interval": "5m",
                            "exporter_failure_threshold": 2,
                        },
                    }
                },
                "service": {
                    "extensions": ["health_check"],
                    "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["otlp_grpc"]}},
                    "telemetry": {"metrics": {"level": "none"}},
                },
            }
        )
        import ssl

        ctx = ssl.create_default_context(cafile=f"{certs}/ca.crt")
        url = f"https://{c.endpoints['extensions::health_check/https']}/health/status"

        def probe() -> tuple[int, str]:
            try:
                with urllib.request.urlopen(url, timeout=5, context=ctx) as resp:
                    return resp.status, resp.read().decode()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read().decode()

        assert probe() == (200, "up")
        ep = c.endpoints["receivers::otlp/grpc"]
        for _ in range(3):  # 3 spans fail to send: more than the threshold of 2
            with pytest.raises(grpc.RpcError):
                export_grpc(ep, one_request())
        assert wait_for(lambda: probe() == (500, "down"))


# -- oauth2client ------------------------------------------------------------------------------


async def test_oauth2client_fetches_caches_and_refreshes_tokens():
    seen: list[dict[str, str]] = []

    async def token(request: web.Request) -> web.Response:
        form = dict(await request.post())
        seen.append({k: str(v) for k, v in form.items()})
        return web.json_response(
            {"access_token": f"tok-{len(seen)}", "token_type": "bearer", "expires_in": 3600}
        )

    app = web.Application()
    app.router.add_post("/oauth2/token", token)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:

        def client(buffer: str) -> OAuth2Client:
            cfg, errs = decode(
                {
                    "client_id": "sieve",
                    "client_secret": "s3cret",
                    "token_url": f"http://127.0.0.1:{port}/oauth2/token",
                    "scopes": ["kafka.read", "kafka.write"],
                    "endpoint_params": {"audience": "kafka"},
                    "expiry_buffer": buffer,
                },
                OAuth2ClientConfig,
                "extensions::oauth2client",
            )
            assert cfg is not None and not errs
            return OAuth2Client(settings("extension", "oauth2client"), cfg)

        cached = client("5m")
        provider: Any = cached.kafka_provider()
        got = await asyncio.gather(*(provider.token() for _ in range(5)))
        assert got == ["tok-1"] * 5 and cached.fetches == 1  # one fetch for every asker
        assert await provider.token() == "tok-1" and cached.fetches == 1  # reused
        assert seen[0] == {
            "grant_type": "client_credentials",
            "client_id": "sieve",
            "client_secret": "s3cret",
            "scope": "kafka.read kafka.write",
            "audience": "kafka",
        }
        # a buffer as long as the token's life: each ask finds it due for refresh
        due = client("3600s")
        assert await due.token() == "tok-2"
        assert await due.token() == "tok-3" and due.fetches == 2
    finally:
        await runner.cleanup()


def test_kafka_oauthbearer_needs_its_extension_started(tmp_path):
    import subprocess
    import sys

    text = (CORPUS / "kafka.yaml").read_text().replace("  extensions: [oauth2client/idp]\n", "")
    p = tmp_path / "k.yaml"
    p.write_text(text)
    ca = CA(str(tmp_path), "k")
    shutil.copy(ca.file, tmp_path / "ca.crt")
    env = {"COMPAT_DIR": str(tmp_path), "COMPAT_CERTS": str(tmp_path), "TRACESIEVE_GC_FREEZE": "0"}
    res = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "--config", str(p)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )
    assert res.returncode == 1, res.stderr
    assert "auth::sasl::oauthbearer_token_source: extension 'oauth2client/idp' is not started" in (
        res.stderr + res.stdout
    )
