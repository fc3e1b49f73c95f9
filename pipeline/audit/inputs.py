"""What `tracesieve audit` reads: files (paths, globs, directories), stdin and Kafka topics,
each in a format detected from its content, never from its name.

Formats (after whole-stream gzip or zstd, recognised by their magic bytes):

- OTLP JSON lines (`{` first): one `TracesData` per line, what the OTel Collector's
  `file` exporter writes with `format: json` (and ours); a line that does not decode is a
  *bad line*, the others are audited. A first line that is only `{` starts one
  (pretty-printed) OTLP JSON document instead.
- Length-prefixed protobuf (a 4-byte big-endian length, then an
  `ExportTraceServiceRequest`): `format: proto`. A length that runs past the end is a
  *truncated frame*; a frame that does not decode is a *bad frame*.
- Length-prefixed zstd frames (the length, then a zstd frame, the magic `28 b5 2f fd` at
  byte 4): the Collector's `compression: zstd`, each message (JSON or protobuf, told apart
  by its first byte) compressed on its own.
- One bare protobuf `ExportTraceServiceRequest` (first byte `0a`).

A Kafka topic (`kafka://HOST:PORT[,HOST:PORT...]/TOPIC`) is read from the earliest offset
of every partition up to the end offsets found at the start, in no consumer group and
committing nothing; each message is OTLP protobuf or OTLP JSON (told apart by its first
byte).

An input that cannot be read (missing, unreadable, a Kafka broker that does not answer) or
that was named explicitly and is of no format above is a usage error (`InputError`: one
line, exit 2). A file reached through a glob or a directory whose format is unknown, or a
stream that breaks (corrupt gzip, truncated frame), is a problem of the input: counted,
listed, and the rest is audited.
"""

from __future__ import annotations

import asyncio
import glob
import gzip
import io
import logging
import os
import struct
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import zstandard

__all__ = [
    "JSON",
    "PROTO",
    "BadMessage",
    "InputError",
    "Message",
    "Problem",
    "Range",
    "Source",
    "detect",
    "expand",
    "probe",
    "ranges",
    "read",
    "read_range",
    "splittable",
]

PROTO, JSON = 0, 1  # message kinds
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# a length prefix beyond it is not a frame (garbage, or not protobuf): below 0x08000000, so
# that a bare ExportTraceServiceRequest (first byte 0x0a) never looks like a frame
MAX_FRAME = (128 << 20) - 1
HEAD = 1 << 16  # bytes read to tell the format
_WS = b" \t\r\n"
_STALL = 30.0  # seconds without a Kafka record while some partition is not read to its end

FORMATS = {
    "json_lines": "OTLP JSON lines",
    "json_document": "an OTLP JSON document",
    "proto_frames": "length-prefixed protobuf",
    "zstd_frames": "length-prefixed zstd frames",
    "proto_message": "one protobuf ExportTraceServiceRequest",
    "empty": "empty",
    "kafka": "Kafka topic",
}


class InputError(Exception):
    """An input the audit cannot start with: one line, exit 2."""


@dataclass(frozen=True)
class Message:
    """One encoded batch: `kind` PROTO or JSON; `ordinal` its line (JSON lines) or frame
    number (1-based) or Kafka offset; `offset` its byte offset in the (decompressed)
    stream, or the Kafka partition."""

    kind: int
    data: bytes
    ordinal: int
    offset: int


@dataclass(frozen=True)
class Problem:
    """Something in an input that could not be audited, and where."""

    kind: str  # bad_lines, bad_frames, bad_files
    where: str
    what: str


@dataclass
class Source:
    name: str  # as given (a path, "-" or the kafka URL)
    path: str | None = None  # None: stdin or Kafka
    kafka: tuple[list[str], str] | None = None  # (brokers, topic)
    explicit: bool = True  # named on the command line (not found through a glob or folder)
    size: int | None = None  # bytes, when known
    compression: str = ""  # "", "gzip" or "zstd" (the whole stream)
    format: str = ""
    problem: str = ""  # a garbage file: why it is not audited
    head: bytes = b""  # stdin's first bytes, read to tell its format
    stream: BinaryIO | None = None  # stdin

    @property
    def described(self) -> str:
        what = FORMATS.get(self.format, self.format or "unknown")
        return f"{what}, {self.compression}" if self.compression else what


# -- finding the inputs ---------------------------------------------------------------------


def expand(inputs: list[str]) -> list[Source]:
    """The sources named by the command line's INPUT arguments, in order."""
    out: list[Source] = []
    stdin = False
    for arg in inputs:
        if arg == "-":
            if stdin:
                raise InputError("-: stdin given more than once")
            stdin = True
            out.append(Source("-"))
        elif arg.startswith("kafka://"):
            out.append(Source(arg, kafka=parse_kafka_url(arg)))
        elif glob.has_magic(arg):
            found = sorted(p for p in glob.glob(arg, recursive=True) if os.path.isfile(p))
            if not found:
                raise InputError(f"{arg}: no file matches")
            out += [Source(p, path=p, explicit=False) for p in found]
        elif os.path.isdir(arg):
            found = sorted(
                os.path.join(arg, n)
                for n in os.listdir(arg)
                if not n.startswith(".") and os.path.isfile(os.path.join(arg, n))
            )
            out += [Source(p, path=p, explicit=False) for p in found]
        else:
            out.append(Source(arg, path=arg))
    if not out:
        raise InputError("no input: give files, globs, directories, - or kafka://HOST:PORT/TOPIC")
    return out


def parse_kafka_url(url: str) -> tuple[list[str], str]:
    rest = url[len("kafka://") :]
    hosts, sep, topic = rest.partition("/")
    brokers = [h for h in hosts.split(",") if h]
    if not sep or not topic or "/" in topic or not brokers:
        raise InputError(f"{url}: want kafka://HOST:PORT[,HOST:PORT...]/TOPIC")
    for b in brokers:
        host, colon, port = b.rpartition(":")
        if not colon or not host or not port.isdigit():
            raise InputError(f"{url}: invalid broker {b!r}: want HOST:PORT")
    return brokers, topic


# -- telling the format -------------------------------------------------------------------


def detect(head: bytes) -> str:
    """The format of a stream that starts with `head` (after any whole-stream
    compression), or "" if none fits."""
    if not head:
        return "empty"
    if len(head) >= 8 and head[4:8] == ZSTD_MAGIC:
        n = struct.unpack(">I", head[:4])[0]
        if 0 < n <= MAX_FRAME:
            return "zstd_frames"
    first = head.lstrip(_WS)[:1]
    if first == b"{":
        line = head.lstrip(_WS).split(b"\n", 1)[0].strip()
        return "json_document" if line == b"{" else "json_lines"
    if not first:
        return "empty"
    if len(head) >= 4:
        n = struct.unpack(">I", head[:4])[0]
        if n <= MAX_FRAME and (n == 0 or (len(head) > 4 and head[4] == 0x0A)):
            return "proto_frames"
    if head[0] == 0x0A:
        return "proto_message"
    return ""


def _decompressed_head(head: bytes, compression: str) -> bytes:
    """The first bytes of the decompressed stream (as far as `head` reaches)."""
    if compression == "gzip":
        return zlib.decompressobj(wbits=31).decompress(head, HEAD)
    return zstandard.ZstdDecompressor().decompressobj().decompress(head)[:HEAD]


def probe(src: Source) -> None:
    """Open the source and tell its format (and compression); raise `InputError` for what
    cannot be read, or for an explicitly named input of unknown format."""
    if src.kafka is not None:
        src.format = "kafka"
        return
    if src.path is None:
        stream = sys.stdin.buffer
        src.stream = stream
        src.head = _read_head(stream)
        head = src.head
    else:
        try:
            with open(src.path, "rb") as fh:
                head = _read_head(fh)
                src.size = os.fstat(fh.fileno()).st_size
        except OSError as exc:
            raise InputError(f"{src.name}: {exc.strerror or exc}") from None
    inner = head
    if head[:2] == GZIP_MAGIC:
        src.compression = "gzip"
    elif head[:4] == ZSTD_MAGIC:
        src.compression = "zstd"
    if src.compression:
        try:
            inner = _decompressed_head(head, src.compression)
        except (zlib.error, zstandard.ZstdError) as exc:
            src.format = "garbage"
            src.problem = f"{src.compression}: cannot decompress ({exc})"
            return
    src.format = detect(inner)
    if not src.format:
        what = (
            f"unknown format (starts with {inner[:8].hex(' ')}): want OTLP JSON lines or "
            "document, length-prefixed protobuf, or either of them gzip- or zstd-compressed"
        )
        if src.explicit:
            raise InputError(f"{src.name}: {what}")
        src.format = "garbage"
        src.problem = what


def _read_head(fh: BinaryIO) -> bytes:
    parts: list[bytes] = []
    n = 0
    while n < HEAD:
        got = fh.read(HEAD - n)
        if not got:
            break
        parts.append(got)
        n += len(got)
    return b"".join(parts)


# -- reading --------------------------------------------------------------------------------


class _Counted(io.RawIOBase):
    """A raw stream that serves `head` first, then `rest`, counting the bytes it hands out
    (the progress bar's "bytes read": compressed bytes for a compressed file)."""

    def __init__(self, head: bytes, rest: BinaryIO, on_bytes: Callable[[int], None]) -> None:
        self._head = memoryview(head)
        self._rest = rest
        self._on_bytes = on_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        if self._head:
            n = min(len(buf), len(self._head))
            buf[:n] = self._head[:n]
            self._head = self._head[n:]
        else:
            got = self._rest.read(len(buf))
            n = len(got)
            buf[:n] = got
        if n:
            self._on_bytes(n)
        return n


def read(
    src: Source, on_bytes: Callable[[int], None], kafka_settings: dict[str, Any]
) -> Iterator[Message | Problem]:
    """Every message of the source, in order, and the problems met (a stream that breaks
    ends with one)."""
    if src.format == "garbage":
        on_bytes(src.size or 0)
        yield Problem("bad_files", src.name, src.problem)
        return
    if src.kafka is not None:
        yield from _read_kafka(src, on_bytes, kafka_settings)
        return
    if src.path is None:
        assert src.stream is not None
        yield from _read_stream(src, _Counted(src.head, src.stream, on_bytes))
        return
    try:
        fh = open(src.path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:  # gone since it was probed
        yield Problem("bad_files", src.name, f"cannot read: {exc.strerror or exc}")
        return
    with fh:
        yield from _read_stream(src, _Counted(b"", fh, on_bytes))  # type: ignore[arg-type]


# -- plain files, read by the workers themselves ---------------------------------------------


@dataclass(frozen=True)
class Range:
    """Bytes [start, end) of a plain file, whole frames or lines, for a worker to read and
    decode itself (no copy through the main process); `ordinal`: the number of the first
    frame (1-based), or 0 for JSON lines (their numbers are known once the ranges before
    are counted)."""

    start: int
    end: int
    ordinal: int


RANGE_BYTES = 4 << 20


def splittable(src: Source) -> bool:
    """Whether the workers read the source themselves, in ranges (a plain file of frames
    or JSON lines)."""
    return (
        src.path is not None
        and not src.compression
        and src.format in ("json_lines", "proto_frames", "zstd_frames")
    )


def ranges(src: Source) -> Iterator[Range | Problem]:
    """The file cut into ranges of whole frames or lines (about `RANGE_BYTES` each); a
    truncated or implausible frame ends it with a problem, as when read in one stream."""
    assert src.path is not None
    try:
        fh = open(src.path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        yield Problem("bad_files", src.name, f"cannot read: {exc.strerror or exc}")
        return
    with fh:
        size = os.fstat(fh.fileno()).st_size
        if src.format == "json_lines":
            yield from _line_ranges(fh, size)
        else:
            yield from _frame_ranges(src, fh, size)


def _line_ranges(fh: BinaryIO, size: int) -> Iterator[Range | Problem]:
    start = 0
    while start < size:
        end = min(start + RANGE_BYTES, size)
        while end < size:  # to the end of the line the cut falls in
            fh.seek(end)
            window = fh.read(1 << 16)
            if not window:
                end = size
                break
            nl = window.find(b"\n")
            if nl >= 0:
                end += nl + 1
                break
            end += len(window)
        yield Range(start, end, 0)
        start = end


def _frame_ranges(src: Source, fh: BinaryIO, size: int) -> Iterator[Range | Problem]:
    pos = start = 0
    n = first = 1
    while pos < size:
        fh.seek(pos)
        hdr = fh.read(4)
        where = f"{src.name}: frame {n} (byte {pos})"
        problem = ""
        if len(hdr) < 4:
            problem = f"truncated: {len(hdr)} of 4 length bytes"
        else:
            length = struct.unpack(">I", hdr)[0]
            if length > MAX_FRAME:
                problem = (
                    f"length {length} is not plausible (more than {(MAX_FRAME + 1) >> 20} MiB): "
                    "not a frame; the rest of the input is skipped"
                )
            elif pos + 4 + length > size:
                problem = f"truncated: {size - pos - 4} of {length} bytes; the input ends"
        if problem:
            if pos > start:
                yield Range(start, pos, first)
            yield Problem("bad_frames", where, problem)
            return
        pos += 4 + length
        n += 1
        if pos - start >= RANGE_BYTES:
            yield Range(start, pos, first)
            start, first = pos, n
    if pos > start:
        yield Range(start, pos, first)


@dataclass(frozen=True)
class BadMessage:
    """A message of a range that cannot be had (a zstd frame that does not decompress)."""

    ordinal: int
    offset: int
    what: str


def lines_in(data: bytes) -> int:
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def read_range(path: str, fmt: str, r: Range) -> tuple[list[Message | BadMessage], int]:
    """The messages of a range (in a worker; frames are whole there: `ranges` saw to it),
    and for JSON lines how many lines it holds (they are numbered from 1 within it)."""
    with open(path, "rb") as fh:
        fh.seek(r.start)
        data = fh.read(r.end - r.start)
    out: list[Message | BadMessage] = []
    if fmt == "json_lines":
        at = r.start
        for lineno, line in enumerate(data.split(b"\n"), 1):
            body = line.strip(_WS)
            if body:
                out.append(Message(JSON, body, lineno, at))
            at += len(line) + 1
        return out, lines_in(data)
    view = memoryview(data)
    pos = 0
    n = r.ordinal
    dctx = zstandard.ZstdDecompressor() if fmt == "zstd_frames" else None
    while pos < len(data):
        size = struct.unpack_from(">I", data, pos)[0]
        body = bytes(view[pos + 4 : pos + 4 + size])
        kind = PROTO
        if dctx is not None:
            try:
                body = dctx.decompressobj().decompress(body)
            except zstandard.ZstdError as exc:
                out.append(BadMessage(n, r.start + pos, f"zstd: {exc}"))
                pos += 4 + size
                n += 1
                continue
            kind = JSON if body.lstrip(_WS)[:1] == b"{" else PROTO
        out.append(Message(kind, body, n, r.start + pos))
        pos += 4 + size
        n += 1
    return out, 0


def _read_stream(src: Source, raw: io.RawIOBase) -> Iterator[Message | Problem]:
    stream: BinaryIO = io.BufferedReader(raw, 1 << 20)  # type: ignore[arg-type]
    if src.compression == "gzip":
        stream = gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[assignment]
    elif src.compression == "zstd":
        reader = zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True)
        stream = io.BufferedReader(reader, 1 << 20)  # type: ignore[arg-type]
    decompressed = " of the decompressed stream" if src.compression else ""
    readers = {
        "json_lines": _json_lines,
        "json_document": _whole,
        "proto_message": _whole,
        "proto_frames": _frames,
        "zstd_frames": _frames,
    }
    reader_fn = readers.get(src.format)
    if reader_fn is None:  # empty
        return
    pos = [0]
    try:
        yield from reader_fn(src, stream, pos)
    except (OSError, EOFError, zlib.error, zstandard.ZstdError) as exc:
        what = f"{src.compression or 'read'}: {exc}"
        yield Problem("bad_files", f"{src.name}: byte {pos[0]}{decompressed}", what)


def _json_lines(src: Source, stream: BinaryIO, pos: list[int]) -> Iterator[Message | Problem]:
    for lineno, line in enumerate(stream, 1):
        at = pos[0]
        pos[0] += len(line)
        body = line.strip(_WS)
        if body:
            yield Message(JSON, body, lineno, at)


def _whole(src: Source, stream: BinaryIO, pos: list[int]) -> Iterator[Message | Problem]:
    data = stream.read()
    pos[0] = len(data)
    if data.strip(_WS):
        yield Message(JSON if src.format == "json_document" else PROTO, data, 1, 0)


def _frames(src: Source, stream: BinaryIO, pos: list[int]) -> Iterator[Message | Problem]:
    zstd = src.format == "zstd_frames"
    dctx = zstandard.ZstdDecompressor() if zstd else None
    n = 0
    while True:
        at = pos[0]
        hdr = stream.read(4)
        if not hdr:
            return
        n += 1
        where = f"{src.name}: frame {n} (byte {at}{' of the decompressed stream' if src.compression else ''})"
        if len(hdr) < 4:
            yield Problem("bad_frames", where, f"truncated: {len(hdr)} of 4 length bytes")
            return
        size = struct.unpack(">I", hdr)[0]
        if size > MAX_FRAME:
            yield Problem(
                "bad_frames",
                where,
                f"length {size} is not plausible (more than {(MAX_FRAME + 1) >> 20} MiB): not a frame; "
                "the rest of the input is skipped",
            )
            return
        data = stream.read(size)
        pos[0] += 4 + len(data)
        if len(data) < size:
            yield Problem(
                "bad_frames", where, f"truncated: {len(data)} of {size} bytes; the input ends"
            )
            return
        if dctx is not None:
            try:
                data = dctx.decompressobj().decompress(data)
            except zstandard.ZstdError as exc:
                yield Problem("bad_frames", where, f"zstd: {exc}")
                continue
            kind = JSON if data.lstrip(_WS)[:1] == b"{" else PROTO
        else:
            kind = PROTO
        yield Message(kind, data, n, at)


# -- Kafka ----------------------------------------------------------------------------------


def _read_kafka(
    src: Source, on_bytes: Callable[[int], None], settings: dict[str, Any]
) -> Iterator[Message | Problem]:
    """The topic's partitions from their earliest offsets up to the end offsets found at
    the start, with aiokafka, in no group (`group_id=None`), partitions assigned by hand,
    nothing committed. (A generator: each step runs the consumer's event loop until the
    next fetch is in.)"""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka import errors as kerrors

    from pipeline import kafkaclient

    assert src.kafka is not None
    brokers, topic = src.kafka
    # aiokafka logs each failed connection itself; what fails is reported here, once
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    loop = asyncio.new_event_loop()
    kw = kafkaclient.client_kwargs(
        brokers,
        settings.get("client_id", kafkaclient.DEFAULT_CLIENT_ID),
        settings.get("tls"),
        settings.get("auth"),
        settings.get("protocol_version", ""),
    )
    state: dict[str, Any] = {}

    async def start() -> tuple[list[Any], dict[Any, int], dict[Any, int]]:
        consumer = state["consumer"] = AIOKafkaConsumer(
            **kw,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 << 20,
            fetch_max_bytes=64 << 20,
        )
        await consumer.start()
        await consumer.topics()
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise InputError(f"{src.name}: no topic {topic!r} on {','.join(brokers)}")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        begin = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, begin[tp])
        return tps, begin, end

    async def fetch(left: set[Any]) -> tuple[dict[Any, list[Any]], dict[Any, int]]:
        consumer = state["consumer"]
        got = await consumer.getmany(*left, timeout_ms=500)
        return got, {tp: await consumer.position(tp) for tp in left}

    async def stop() -> None:
        consumer = state.get("consumer")
        if consumer is not None:
            await consumer.stop()

    try:
        try:
            tps, begin, end = loop.run_until_complete(start())
        except (kerrors.KafkaError, OSError) as exc:
            raise InputError(f"{src.name}: cannot read ({kafkaclient.describe(exc)})") from None
        left = {tp for tp in tps if begin[tp] < end[tp]}
        last = time.monotonic()
        while left:
            got, positions = loop.run_until_complete(fetch(left))
            if not got:
                if time.monotonic() - last > _STALL:
                    at = ", ".join(f"{tp.partition}@{positions[tp]}" for tp in sorted(left))
                    yield Problem(
                        "bad_files",
                        src.name,
                        f"no record for {_STALL:.0f} s from partitions not read to their end "
                        f"(partition@offset: {at}); stopped there",
                    )
                    return
                continue
            last = time.monotonic()
            for tp, records in got.items():
                for r in records:
                    if r.offset >= end[tp]:
                        break
                    value = r.value
                    if value:
                        on_bytes(len(value))
                        kind = JSON if value.lstrip(_WS)[:1] == b"{" else PROTO
                        yield Message(kind, value, r.offset, tp.partition)
            for tp in list(left):
                if positions[tp] >= end[tp]:
                    left.discard(tp)
    finally:
        loop.run_until_complete(stop())
        loop.close()
