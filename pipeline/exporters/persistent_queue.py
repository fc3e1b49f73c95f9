"""A persistent sending queue (`sending_queue.storage: <directory>`): batches accepted by an
exporter survive a crash, kill -9 or restart and are sent after the next start.

On disk, under `<storage>/<exporter id>/`:

    seg-<first seq>.wal   write-ahead segments: records appended in order
    acks.log              sequence numbers of records that are done (sent or given up)
    lock                  flock'd while a collector uses the directory

A segment record is `magic(4) length(4) crc32(4) seq(8) spans(4) payload(length)`, the
CRC covering seq, spans and payload; an ack record is `seq(8) crc32(4)`. Recovery scans
every segment and keeps each record whose CRC checks; a torn write at the tail (kill -9,
power loss) or a corrupt range is skipped, never trusted, and scanning resynchronises at
the next valid record. Everything not acked is queued again, in order.

Each start writes a new segment; old ones are only read. Acks may come in any order (ten
senders finish out of order): a segment is deleted once every record in it is acked and
it is no longer written to, and the ack log is rewritten when most of it is about
deleted segments.

Durability (`fsync`): the record is handed to the OS before `offer` returns, so a killed
process loses nothing; `always` also fsyncs before returning (survives power loss, one
fsync per batch), `batch` fsyncs every `fsync_interval` in a thread, `never` leaves it to
the OS. Losing an ack only causes a resend (duplicates), so acks are never fsynced
before returning.

Capacity is `queue_size` in the configured sizer (`requests`, `items`, or `bytes` of
encoded batches), counting every record not yet acked, in flight ones included.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import logging
import os
import struct
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

from pipeline.configtypes import QueueConfig
from pipeline.exporters.helper import WakeOne
from pipeline.pdata import Delivery, Traces
from pipeline.telemetry import RateLimitedLog

log = logging.getLogger("tracesieve.exporter.persistent_queue")

MAGIC = b"TSQ1"
_HEAD = struct.Struct(">4sIIQI")  # magic, payload length, crc32, seq, spans
_ACK = struct.Struct(">QI")  # seq, crc32(seq)
_SEQ = struct.Struct(">Q")
SEGMENT_BYTES = 8 << 20
MAX_RECORD = 1 << 31  # larger lengths are corruption


@dataclass
class _Segment:
    first_seq: int
    path: str
    size: int = 0
    seqs: list[int] = field(default_factory=list)
    unacked: set[int] = field(default_factory=set)
    read_fd: int | None = None


@dataclass
class _Item:
    seq: int
    segment: _Segment
    offset: int  # of the payload
    length: int
    spans: int
    units: int  # in the sizer's unit


def _record_crc(seq: int, spans: int, payload: bytes | memoryview) -> int:
    return zlib.crc32(payload, zlib.crc32(struct.pack(">QI", seq, spans)))


def _ack_record(seq: int) -> bytes:
    raw = _SEQ.pack(seq)
    return raw + struct.pack(">I", zlib.crc32(raw))


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, parts: list[bytes]) -> None:
    buffers = [memoryview(p) for p in parts if p]
    while buffers:
        n = os.writev(fd, buffers)
        while buffers and n >= len(buffers[0]):
            n -= len(buffers[0])
            buffers.pop(0)
        if buffers and n:
            buffers[0] = buffers[0][n:]


def scan_segment(data: bytes) -> tuple[list[tuple[int, int, int, int]], int]:
    """The valid records of a segment as (seq, payload offset, length, spans), and how
    many bytes were skipped as torn or corrupt."""
    records: list[tuple[int, int, int, int]] = []
    pos, skipped, n = 0, 0, len(data)
    view = memoryview(data)
    while pos < n:
        ok = False
        if pos + _HEAD.size <= n:
            magic, length, crc, seq, spans = _HEAD.unpack_from(data, pos)
            start = pos + _HEAD.size
            if magic == MAGIC and length < MAX_RECORD and start + length <= n:
                payload = view[start : start + length]
                if _record_crc(seq, spans, payload) == crc:
                    records.append((seq, start, length, spans))
                    pos = start + length
                    ok = True
        if not ok:
            nxt = data.find(MAGIC, pos + 1)
            end = n if nxt < 0 else nxt
            skipped += end - pos
            pos = end
    return records, skipped


class PersistentQueue:
    """A `SendingQueue` kept on disk; see the module docstring."""

    persistent = True

    def __init__(
        self, cfg: QueueConfig, exporter_id: str, *, segment_bytes: int = SEGMENT_BYTES
    ) -> None:
        if not cfg.storage:
            raise ValueError("sending_queue.storage is not set")
        self.capacity = cfg.queue_size
        self._sizer = cfg.sizer
        self._fsync = cfg.fsync
        self._fsync_interval = max(cfg.fsync_interval.seconds, 0.001)
        self._segment_bytes = segment_bytes
        self.dir = os.path.join(cfg.storage, quote(exporter_id, safe=""))
        os.makedirs(self.dir, exist_ok=True)
        self._lock_fd = os.open(os.path.join(self.dir, "lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            raise OSError(
                errno.EBUSY, f"sending queue directory {self.dir} is in use by another process"
            ) from None
        self._segments: dict[int, _Segment] = {}  # by first seq, in order
        self._items: dict[int, _Item] = {}  # every record not acked
        self._ready: deque[int] = deque()  # not acked and not handed out
        self._deliveries: dict[int, tuple[Delivery, ...]] = {}
        self._used = 0  # units not acked (queued and in flight): what capacity bounds
        self._waiting = 0  # units queued, not handed out yet: what size() reports
        self._ack_entries = 0
        self._dirty = False
        self._closed = False
        self.warn = RateLimitedLog(log, 1.0)
        self.recovered = 0  # records found on disk at start, not yet acked
        self.skipped_bytes = 0  # torn or corrupt bytes skipped at recovery
        self.lost = 0  # records dropped because they could not be read back
        self._has_items = WakeOne()
        self._has_room = asyncio.Event()
        self._has_room.set()
        try:
            next_seq = self._recover()
            self._next_seq = next_seq
            self._recovered_below = next_seq
            self._ack_fd = os.open(
                os.path.join(self.dir, "acks.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
            )
            self._current = self._new_segment(next_seq)
        except BaseException:
            self._release_lock()
            raise
        self._flusher: asyncio.Task[None] | None = None
        if self._fsync == "batch":
            self._flusher = asyncio.get_running_loop().create_task(
                self._flush_loop(), name=f"{exporter_id}-queue-fsync"
            )

    # -- recovery -------------------------------------------------------------------------
    def _recover(self) -> int:
        max_seq = -1
        names = sorted(
            (int(f[4:-4]), f)
            for f in os.listdir(self.dir)
            if f.startswith("seg-") and f.endswith(".wal") and f[4:-4].isdigit()
        )
        for first, name in names:
            path = os.path.join(self.dir, name)
            with open(path, "rb") as fh:
                data = fh.read()
            records, skipped = scan_segment(data)
            if skipped:
                self.skipped_bytes += skipped
                log.warning(
                    "%s: skipped %d torn or corrupt bytes (an interrupted write is expected "
                    "after a crash)",
                    path,
                    skipped,
                )
            max_seq = max(max_seq, first)
            seg = _Segment(first, path, size=len(data))
            for seq, off, length, spans in records:
                if seq in self._items:
                    continue  # cannot happen unless files were copied around
                seg.seqs.append(seq)
                seg.unacked.add(seq)
                units = self._units(length, spans)
                self._items[seq] = _Item(seq, seg, off, length, spans, units)
                max_seq = max(max_seq, seq)
            self._segments[first] = seg
        ack_path = os.path.join(self.dir, "acks.log")
        acked: set[int] = set()
        if os.path.exists(ack_path):
            with open(ack_path, "rb") as fh:
                data = fh.read()
            usable = len(data) - len(data) % _ACK.size
            for off in range(0, usable, _ACK.size):
                seq, crc = _ACK.unpack_from(data, off)
                if zlib.crc32(data[off : off + 8]) == crc:
                    acked.add(seq)
                    max_seq = max(max_seq, seq)
        for seq in acked:
            item = self._items.pop(seq, None)
            if item is not None:
                item.segment.unacked.discard(seq)
        for first in list(self._segments):
            seg = self._segments[first]
            if not seg.unacked:
                self._delete_segment(seg)
        for seq in sorted(self._items):
            self._ready.append(seq)
            self._used += self._items[seq].units
            self._waiting += self._items[seq].units
        self.recovered = len(self._ready)
        if self._ready:
            log.info(
                "%s: %d batches (%d spans) from before the last stop will be sent",
                self.dir,
                len(self._ready),
                sum(i.spans for i in self._items.values()),
            )
        self._rewrite_acks()
        return max_seq + 1

    def _units(self, length: int, spans: int) -> int:
        if self._sizer == "bytes":
            return length
        if self._sizer == "items":
            return spans
        return 1

    # -- files ----------------------------------------------------------------------------
    def _new_segment(self, first_seq: int) -> _Segment:
        """Open a segment for writing and make it the current one."""
        path = os.path.join(self.dir, f"seg-{first_seq:020d}.wal")
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        seg = _Segment(first_seq, path, size=os.fstat(fd).st_size)
        if self._fsync == "always":
            _fsync_dir(self.dir)
        self._write_fd = fd
        self._segments[first_seq] = seg
        return seg

    def _rotate(self) -> None:
        old, old_fd = self._current, self._write_fd
        if self._fsync != "never":
            os.fsync(old_fd)
        self._current = self._new_segment(self._next_seq)  # on failure: keep the old one
        os.close(old_fd)
        if not old.unacked:
            self._delete_segment(old)

    def _delete_segment(self, seg: _Segment) -> None:
        self._segments.pop(seg.first_seq, None)
        if seg.read_fd is not None:
            os.close(seg.read_fd)
            seg.read_fd = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(seg.path)

    def _rewrite_acks(self) -> None:
        """Keep only acks of records in live segments (write a new file, then rename)."""
        path = os.path.join(self.dir, "acks.log")
        tmp = path + ".tmp"
        parts = [
            _ack_record(s)
            for seg in self._segments.values()
            for s in seg.seqs
            if s not in seg.unacked
        ]
        with open(tmp, "wb") as fh:
            fh.write(b"".join(parts))
            fh.flush()
            if self._fsync != "never":
                os.fsync(fh.fileno())
        os.replace(tmp, path)
        self._ack_entries = len(parts)
        fd = getattr(self, "_ack_fd", None)
        if fd is not None:
            os.close(fd)
            self._ack_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    # -- SendingQueue -----------------------------------------------------------------------
    def size(self) -> int:
        """Units waiting to be sent (as the in-memory queue counts); capacity also counts
        the batches in flight, which are on disk until acknowledged."""
        return self._waiting

    def empty(self) -> bool:
        return not self._ready

    def idle(self) -> bool:
        return self._has_items.waiting()

    def offer(self, traces: Traces) -> bool:
        if self._closed:
            return False
        payload = traces.to_bytes()
        units = self._units(len(payload), traces.span_count)
        if self._used + units > self.capacity and self._items:
            self._has_room.clear()
            return False
        if self._current.size >= self._segment_bytes:
            try:
                self._rotate()
            except OSError as exc:  # go on in the current segment
                self.warn.warning("cannot start a new queue segment in %s: %s", self.dir, exc)
        seg = self._current
        seq = self._next_seq
        head = _HEAD.pack(
            MAGIC,
            len(payload),
            _record_crc(seq, traces.span_count, payload),
            seq,
            traces.span_count,
        )
        try:
            _write_all(self._write_fd, [head, payload])
            if self._fsync == "always":
                os.fsync(self._write_fd)
        except OSError as exc:
            self.warn.warning("cannot write to the sending queue in %s: %s", self.dir, exc)
            with contextlib.suppress(OSError):
                os.ftruncate(self._write_fd, seg.size)
            return False
        self._next_seq += 1
        self._dirty = True
        item = _Item(seq, seg, seg.size + _HEAD.size, len(payload), traces.span_count, units)
        seg.size += _HEAD.size + len(payload)
        seg.seqs.append(seq)
        seg.unacked.add(seq)
        self._items[seq] = item
        if traces.deliveries:
            self._deliveries[seq] = traces.deliveries
        self._ready.append(seq)
        self._used += units
        self._waiting += units
        self._has_items.notify()
        return True

    async def get(self) -> tuple[Traces, Callable[[], None]]:
        while True:
            while not self._ready:
                await self._has_items.wait()
            seq = self._ready.popleft()
            item = self._items.get(seq)
            if item is None:
                continue
            self._waiting -= item.units
            try:
                payload = self._read(item)
            except (OSError, ValueError) as exc:
                self.lost += 1
                self.warn.warning("dropping a queued batch of %d spans: %s", item.spans, exc)
                self._ack(seq)
                continue
            deliveries = self._deliveries.pop(seq, ())
            traces = Traces(raw=payload, span_count=item.spans, deliveries=deliveries)
            return traces, functools.partial(self._ack, seq)

    def _read(self, item: _Item) -> bytes:
        seg = item.segment
        if seg.read_fd is None:
            seg.read_fd = os.open(seg.path, os.O_RDONLY)
        payload = os.pread(seg.read_fd, item.length, item.offset)
        if len(payload) != item.length:
            raise ValueError(f"{seg.path}: record {item.seq} is truncated")
        if item.seq < self._recovered_below:
            # checked when scanned at start, but the disk may have changed since
            head = os.pread(seg.read_fd, _HEAD.size, item.offset - _HEAD.size)
            _, _, crc, _, _ = _HEAD.unpack(head)
            if _record_crc(item.seq, item.spans, payload) != crc:
                raise ValueError(f"{seg.path}: record {item.seq} fails its checksum")
        return payload

    def _ack(self, seq: int) -> None:
        item = self._items.pop(seq, None)
        if item is None:
            return  # acked already
        self._deliveries.pop(seq, None)
        self._used -= item.units
        self._has_room.set()
        seg = item.segment
        seg.unacked.discard(seq)
        if not self._closed:
            try:
                os.write(self._ack_fd, _ack_record(seq))
                self._ack_entries += 1
                self._dirty = True
            except OSError as exc:
                self.warn.warning(
                    "cannot record an ack in %s (it will be resent): %s", self.dir, exc
                )
        if not seg.unacked and seg is not self._current:
            self._delete_segment(seg)
            live = sum(len(s.seqs) - len(s.unacked) for s in self._segments.values())
            if self._ack_entries > 2 * live + 4096 and not self._closed:
                self._rewrite_acks()

    async def wait_for_room(self) -> None:
        while self._used >= self.capacity:
            self._has_room.clear()
            await self._has_room.wait()

    def drain_remaining(self) -> list[Traces]:
        return []  # kept on disk for the next start

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        if self._fsync != "never":
            for fd in (self._write_fd, self._ack_fd):
                with contextlib.suppress(OSError):
                    os.fsync(fd)
        for fd in (self._write_fd, self._ack_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        for seg in list(self._segments.values()):
            if seg.read_fd is not None:
                os.close(seg.read_fd)
                seg.read_fd = None
        if not self._current.unacked:
            self._delete_segment(self._current)
        # the data is safe on disk: whoever waits on it (e.g. a Kafka offset) may go on
        for deliveries in self._deliveries.values():
            for d in deliveries:
                d.release(True)
        self._deliveries.clear()
        self._release_lock()

    def _release_lock(self) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)

    # -- background fsync -------------------------------------------------------------------
    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self._fsync_interval)
            if not self._dirty or self._closed:
                continue
            self._dirty = False
            # duplicates of the descriptors: the originals may be closed meanwhile
            fds = [os.dup(self._write_fd), os.dup(self._ack_fd)]
            try:
                await asyncio.to_thread(_fsync_all, fds, self.dir)
            except OSError as exc:
                self.warn.warning("fsync of the sending queue in %s failed: %s", self.dir, exc)


def _fsync_all(fds: list[int], directory: str) -> None:
    try:
        for fd in fds:
            os.fsync(fd)
        _fsync_dir(directory)
    finally:
        for fd in fds:
            os.close(fd)
