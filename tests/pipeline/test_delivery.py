"""Delivery guarantees, end to end through the CLI: a graceful stop loses no accepted
span; a downstream that is down is retried until it returns; a full queue refuses
clients with the spec's retryable codes and the refusals are counted."""

from __future__ import annotations

import signal
import time
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from pipeline.service import SAME_SIGNAL_WINDOW
from pipeline.testing import (
    OTLPServer,
    export_grpc,
    export_http,
    free_port,
    metric,
    read_json_lines,
    sample_request,
    scrape,
    span_index,
    spans_in,
    wait_for,
)


def forwarder(
    endpoint: str,
    *,
    batch: dict[str, Any] | None = None,
    queue: dict[str, Any] | None = None,
    retry: dict[str, Any] | None = None,
    metrics: bool = False,
    kind: str = "otlp_grpc",
) -> dict[str, Any]:
    """OTLP in -> [batch] -> otlp_grpc (or otlp_http) out to `endpoint`, as `<kind>/down`."""
    exporter: dict[str, Any] = (
        {"endpoint": endpoint, "tls": {"insecure": True}}
        if kind == "otlp_grpc"
        else {"endpoint": f"http://{endpoint}"}
    )
    if queue is not None:
        exporter["sending_queue"] = queue
    exporter["retry_on_failure"] = retry or {"initial_interval": "100ms", "max_interval": "500ms"}
    return {
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": "127.0.0.1:0"},
                    "http": {"endpoint": "127.0.0.1:0"},
                }
            }
        },
        "processors": {"batch": batch or {}},
        "exporters": {f"{kind}/down": exporter},
        "service": {
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["batch"] if batch is not None else [],
                    "exporters": [f"{kind}/down"],
                }
            },
            "telemetry": {"metrics": {"address": "127.0.0.1:0"} if metrics else {"level": "none"}},
            "shutdown_timeout": "30s",
        },
    }


def receiver_only(out: str, endpoint: str, protocol: str = "grpc") -> dict[str, Any]:
    return {
        "receivers": {"otlp": {"protocols": {protocol: {"endpoint": endpoint}}}},
        "exporters": {"file": {"path": out, "flush_interval": 0}},
        "service": {
            "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["file"]}},
            "telemetry": {"metrics": {"level": "none"}},
        },
    }


@pytest.mark.parametrize("in_batch", [False, True], ids=["queued", "queued-and-batched"])
def test_sigterm_drains_every_accepted_span_to_a_slow_downstream(collector_factory, in_batch):
    with OTLPServer(delay=0.05) as slow:
        slow.hold()  # nothing completes until the collector is stopping
        batch = {"timeout": "30s", "send_batch_size": 100} if in_batch else None
        a = collector_factory(
            forwarder(
                slow.endpoint,
                batch=batch,
                queue={"num_consumers": 2, "queue_size": 1000},
                metrics=True,
            )
        )
        sent = [sample_request(seed, n_spans=30) for seed in range(21)]
        for req in sent:
            export_grpc(a.endpoints["receivers::otlp/grpc"], req)  # each one accepted
        assert wait_for(lambda: slow.calls >= 2)  # both senders are stuck
        assert slow.span_count == 0
        values = scrape(a.endpoints["telemetry/http"])
        assert metric(values, "otelcol_exporter_queue_size") > 0  # queued toward downstream
        if in_batch:  # and some spans still wait in the batch processor
            incoming = metric(values, "otelcol_processor_incoming_items_total")
            outgoing = metric(values, "otelcol_processor_outgoing_items_total")
            assert incoming == 630 and outgoing == 600
        a.signal(signal.SIGTERM)
        assert wait_for(lambda: "shutting down" in a.output)
        slow.release()
        assert a.stop() == 0, a.output
        assert span_index([*slow.requests]) == span_index(sent), a.output
        assert "could not be sent" not in a.output


@pytest.mark.parametrize("kind", ["otlp_grpc", "otlp_http"])
def test_downstream_down_is_retried_until_it_returns(collector_factory, tmp_path, kind):
    port = free_port()
    a = collector_factory(forwarder(f"127.0.0.1:{port}", metrics=True, kind=kind))
    sent = [sample_request(seed, n_spans=10) for seed in range(5)]
    for req in sent:
        export_grpc(a.endpoints["receivers::otlp/grpc"], req)
    # the first attempts fail and are retried with backoff
    assert wait_for(lambda: "export failed, retrying" in a.output)
    values = scrape(a.endpoints["telemetry/http"])
    assert metric(values, "otelcol_exporter_sent_spans_total") == 0
    assert metric(values, "otelcol_exporter_send_failed_spans_total") == 0
    # the downstream comes up: another tracesieve on that port
    out = str(tmp_path / "b.jsonl")
    protocol = "grpc" if kind == "otlp_grpc" else "http"
    b = collector_factory(receiver_only(out, f"127.0.0.1:{port}", protocol))
    assert wait_for(lambda: len(spans_in(read_json_lines(out))) >= 50, timeout=30)
    assert span_index(read_json_lines(out)) == span_index(sent)
    values = scrape(a.endpoints["telemetry/http"])
    assert metric(values, "otelcol_exporter_sent_spans_total", exporter=f"{kind}/down") == 50
    assert metric(values, "otelcol_exporter_send_failed_spans_total") == 0
    assert a.stop() == 0 and b.stop() == 0


def retry_info(err: grpc.RpcError) -> float | None:
    for k, v in err.trailing_metadata() or ():  # type: ignore[attr-defined]
        if k == "grpc-status-details-bin":
            st = status_pb2.Status.FromString(v)
            for d in st.details:
                info = error_details_pb2.RetryInfo()
                if d.Unpack(info):
                    return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return None


def test_full_queue_refuses_clients_and_counts_it(collector_factory):
    with OTLPServer() as down:
        down.hold()  # the one sender waits on the first batch; the queue fills
        a = collector_factory(
            forwarder(down.endpoint, queue={"num_consumers": 1, "queue_size": 2}, metrics=True)
        )
        grpc_ep = a.endpoints["receivers::otlp/grpc"]
        http_ep = a.endpoints["receivers::otlp/http"]
        accepted: list[Any] = []
        refused: grpc.RpcError | None = None
        for seed in range(10):
            req = sample_request(seed, n_spans=10)
            try:
                export_grpc(grpc_ep, req)
            except grpc.RpcError as exc:
                refused = exc
                break
            accepted.append(req)
            if seed == 0:  # the sender has taken the first batch and is stuck on it
                assert wait_for(lambda: down.calls >= 1)
        assert refused is not None, "the queue never filled"
        assert refused.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        assert "sending queue is full" in refused.details()  # type: ignore[attr-defined]
        assert retry_info(refused) is not None
        assert len(accepted) == 3  # one being sent + queue_size

        status, headers, _ = export_http(http_ep, sample_request(99, 10).SerializeToString())
        assert status == 503 and int(headers["Retry-After"]) >= 1

        values = scrape(a.endpoints["telemetry/http"])
        assert metric(values, "otelcol_exporter_enqueue_failed_spans_total") == 20
        assert metric(values, "otelcol_receiver_refused_spans_total", transport="grpc") == 10
        assert metric(values, "otelcol_receiver_refused_spans_total", transport="http") == 10
        assert metric(values, "otelcol_receiver_accepted_spans_total") == 30
        assert (
            metric(values, "otelcol_receiver_requests_total", outcome="refused", transport="grpc")
            == 1
        )
        assert metric(values, "otelcol_exporter_queue_capacity", exporter="otlp_grpc/down") == 2
        assert metric(values, "otelcol_exporter_queue_size", exporter="otlp_grpc/down") == 2

        down.release()  # downstream is fine again: everything accepted arrives
        assert wait_for(lambda: down.span_count >= 30)
        assert a.stop() == 0
        assert span_index(down.requests) == span_index(accepted)


def test_shutdown_deadline_bounds_the_stop_and_counts_what_is_left(collector_factory):
    with OTLPServer() as down:
        down.hold()  # never answers while the collector stops
        cfg = forwarder(down.endpoint, queue={"num_consumers": 1, "queue_size": 100})
        cfg["service"]["shutdown_timeout"] = "1s"
        a = collector_factory(cfg)
        for seed in range(3):
            export_grpc(a.endpoints["receivers::otlp/grpc"], sample_request(seed, n_spans=10))
        assert wait_for(lambda: down.calls >= 1)
        assert a.stop() == 0
        assert "30 spans could not be sent before the shutdown deadline" in a.output, a.output


def test_second_signal_forces_exit(collector_factory):
    with OTLPServer() as down:
        down.hold()
        a = collector_factory(forwarder(down.endpoint))
        export_grpc(a.endpoints["receivers::otlp/grpc"], sample_request(1, n_spans=10))
        assert wait_for(lambda: down.calls >= 1)
        a.signal(signal.SIGTERM)
        assert wait_for(lambda: "shutting down" in a.output)
        time.sleep(SAME_SIGNAL_WINDOW)  # a second request, not the first one delivered twice
        assert a.stop(signal.SIGTERM) == 130
        assert "forcing exit" in a.output


def test_one_stop_delivered_twice_still_drains(collector_factory):
    """`make run` under `timeout` or a supervisor gets SIGTERM from its parent and from the
    process group: the stop stays graceful and every accepted span is delivered."""
    with OTLPServer() as down:
        down.hold()
        a = collector_factory(forwarder(down.endpoint))
        sent = [sample_request(seed, n_spans=10) for seed in range(3)]
        for req in sent:
            export_grpc(a.endpoints["receivers::otlp/grpc"], req)
        assert wait_for(lambda: down.calls >= 1)
        a.signal(signal.SIGTERM)
        time.sleep(0.02)  # two deliveries, not one merged pending signal
        a.signal(signal.SIGTERM)
        assert wait_for(lambda: "taken as the same stop" in a.output), a.output
        down.release()
        assert a.stop() == 0, a.output
        assert span_index([*down.requests]) == span_index(sent), a.output
        assert "forcing exit" not in a.output
