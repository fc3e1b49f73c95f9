"""Fault tests: real processes through the CLI, a load generator that counts what got a
success response, and a second tracesieve as the backend. Whatever a client was told was
accepted must reach the far end; duplicates are allowed and counted.

Figures are printed (run with -s to see them)."""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import pytest

from benchmarks.loadgen import GRPCSender, RequestBuilder, tally
from pipeline.testing import free_port, wait_for
from tests.pipeline.faults import backend_config, metric_sum, metrics, middle_config, received

OUTAGE_SECONDS = float(os.environ.get("TS_OUTAGE", "6"))
"""The backend outage. What counts is its length against the middle's retry schedule: it
spans the same 60 retries at the maximum interval (100 ms here, after 20 ms at first) as
the 30 s outage of the default schedule (500 ms) did. TS_OUTAGE=30 runs the long one."""
RETRY_MAX_S = OUTAGE_SECONDS / 60


def workdir(tmp_path, name: str) -> str:  # type: ignore[no-untyped-def]
    """Each collector its own directory (each writes its config.yaml there)."""
    path = tmp_path / name
    path.mkdir(exist_ok=True)
    return str(path)


def report(name: str, sender: GRPCSender, t) -> None:  # type: ignore[no-untyped-def]
    print(
        f"\n[{name}] sent {sender.stats.spans_attempted} spans, accepted {t.accepted}, "
        f"refused requests {dict(sender.stats.refused)}, received {t.received_unique} unique, "
        f"lost {t.lost}, duplicates {t.duplicates}, received-but-not-acknowledged {t.unexpected}"
    )


def test_backend_down_then_back_loses_nothing(tmp_path, collector_factory):
    bport, mport = free_port(), free_port()
    out = str(tmp_path / "backend.bin")
    backend = collector_factory(backend_config(bport, out), workdir=workdir(tmp_path, "backend"))
    retry = (f"{RETRY_MAX_S / 5 * 1000:.0f}ms", f"{RETRY_MAX_S * 1000:.0f}ms")
    middle = collector_factory(
        middle_config(mport, bport, retry=retry), workdir=workdir(tmp_path, "middle")
    )
    sender = GRPCSender(f"127.0.0.1:{mport}", spans_per_request=50, rate=1000).start()
    try:
        assert wait_for(lambda: len(received(out)) >= 500)
        backend.stop()
        down_at = time.monotonic()
        accepted_before = sender.stats.accepted_count
        # the outage: the sender keeps going; the middle collector queues and retries
        threading.Event().wait(OUTAGE_SECONDS)
        accepted_during = sender.stats.accepted_count - accepted_before
        backend.start()
        print(f"\nbackend was down {time.monotonic() - down_at:.1f}s")
        assert wait_for(
            lambda: sender.stats.accepted_count > accepted_before + accepted_during + 500
        )
    finally:
        stats = sender.stop()
    assert accepted_during > 500 * OUTAGE_SECONDS  # clients went on being served meanwhile
    assert wait_for(lambda: stats.accepted <= set(received(out)), timeout=60)
    t = tally(stats.accepted, received(out))
    report(f"backend down {OUTAGE_SECONDS:.0f}s", sender, t)
    assert t.lost == 0
    m = metrics(middle)
    assert metric_sum(m, "otelcol_exporter_send_failed_spans") == 0


@pytest.mark.parametrize("exporter", ["otlp_grpc", "otlp_http"])
def test_sigkill_with_persistent_queue_loses_nothing(tmp_path, collector_factory, exporter):
    bport, bhttp, mport = free_port(), free_port(), free_port()
    out = str(tmp_path / "backend.bin")
    queue = {"storage": str(tmp_path / "queue"), "sizer": "bytes", "queue_size": 512 << 20}
    backend = collector_factory(
        backend_config(bport, out, http_port=bhttp), workdir=workdir(tmp_path, "backend")
    )
    target = bhttp if exporter == "otlp_http" else bport
    middle = collector_factory(
        middle_config(mport, target, queue=queue, exporter=exporter),
        workdir=workdir(tmp_path, "middle"),
    )
    sender = GRPCSender(f"127.0.0.1:{mport}", spans_per_request=50, rate=4000).start()
    try:
        assert wait_for(lambda: len(received(out)) >= 1000)
        backend.stop()  # what is accepted from now on waits in the middle's queue on disk
        assert wait_for(
            lambda: metric_sum(metrics(middle), "otelcol_exporter_queue_size") > 1 << 20
        )
        middle.kill()  # SIGKILL mid-stream
        accepted_at_kill = set(sender.stats.accepted)
        before_kill = set(received(out))
        middle.start()  # same config, same queue directory, same port
        backend.start()
        n = sender.stats.accepted_count
        assert wait_for(lambda: sender.stats.accepted_count > n + 2000)
    finally:
        stats = sender.stop()
    pending_at_kill = accepted_at_kill - before_kill
    print(f"\nspans accepted but only in the queue when killed: {len(pending_at_kill)}")
    assert len(pending_at_kill) > 1000  # the kill did hit data in flight
    assert wait_for(lambda: stats.accepted <= set(received(out)), timeout=60)
    t = tally(stats.accepted, received(out))
    report(f"SIGKILL + persistent queue, {exporter}", sender, t)
    assert t.lost == 0
    assert "will be sent" in middle.output  # recovered from disk after the restart


def test_sigterm_under_full_load_loses_nothing_accepted(tmp_path, collector_factory):
    bport, mport = free_port(), free_port()
    out = str(tmp_path / "backend.bin")
    collector_factory(backend_config(bport, out), workdir=workdir(tmp_path, "backend"))
    middle = collector_factory(
        middle_config(mport, bport, processors=["batch"]), workdir=workdir(tmp_path, "middle")
    )
    sender = GRPCSender(f"127.0.0.1:{mport}", spans_per_request=200, threads=4).start()
    try:
        assert wait_for(lambda: sender.stats.accepted_count >= 30_000)
        code = middle.stop(signal.SIGTERM)
    finally:
        stats = sender.stop()
    assert code == 0, middle.output[-2000:]
    assert "could not be sent" not in middle.output
    assert wait_for(lambda: stats.accepted <= set(received(out)), timeout=30)
    t = tally(stats.accepted, received(out))
    report("SIGTERM under load", sender, t)
    assert t.lost == 0
    assert stats.refused_requests > 0  # it really was stopped under load


def test_beyond_capacity_clients_are_refused_and_it_is_counted(tmp_path, collector_factory):
    bport, mport = free_port(), free_port()
    out = str(tmp_path / "backend.bin")
    queue = {"queue_size": 5, "num_consumers": 1}
    middle = collector_factory(
        middle_config(mport, bport, queue=queue, http=True), workdir=workdir(tmp_path, "middle")
    )
    # the backend is down: one batch in flight (retrying), five queued, the rest refused
    sender = GRPCSender(f"127.0.0.1:{mport}", spans_per_request=10)
    import grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{mport}")
    call = channel.unary_unary(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        request_serializer=None,
        response_deserializer=None,
    )
    builder = RequestBuilder(10, tag=3)
    codes = []
    for _ in range(20):
        body, ids = builder.next()
        try:
            call(body, timeout=5)
        except grpc.RpcError as err:
            codes.append(err.code())
            continue
        codes.append(grpc.StatusCode.OK)
        sender.stats.accepted.update(ids)
        sender.stats.spans_ok += len(ids)
    channel.close()
    http_url = f"http://{middle.endpoints['receivers::otlp/http']}/v1/traces"
    body, _ = builder.next()
    resp = httpx.post(http_url, content=body, headers={"Content-Type": "application/x-protobuf"})
    assert resp.status_code == 503 and "Retry-After" in resp.headers
    refused = [c for c in codes if c != grpc.StatusCode.OK]
    assert set(refused) == {grpc.StatusCode.UNAVAILABLE}
    assert 5 <= codes.count(grpc.StatusCode.OK) <= 6
    m = metrics(middle)
    refused_spans = 10 * (len(refused) + 1)
    assert metric_sum(m, "otelcol_receiver_refused_spans") == refused_spans
    assert metric_sum(m, "otelcol_exporter_enqueue_failed_spans") == refused_spans
    assert metric_sum(m, "otelcol_receiver_requests", outcome="refused") == len(refused) + 1
    # nothing accepted was dropped: once the backend is up, all of it arrives
    collector_factory(backend_config(bport, out), workdir=workdir(tmp_path, "backend"))
    assert wait_for(lambda: sender.stats.accepted <= set(received(out)), timeout=30)
    t = tally(sender.stats.accepted, received(out))
    print(
        f"\n[beyond capacity] accepted {t.accepted}, refused {len(refused) + 1} requests, lost {t.lost}"
    )
    assert t.lost == 0 and t.unexpected == 0
    assert metric_sum(metrics(middle), "otelcol_exporter_send_failed_spans") == 0
    assert os.path.getsize(out) > 0
