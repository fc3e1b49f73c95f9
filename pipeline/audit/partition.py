"""Partitioning a dump by trace id, on disk.

Every decoded batch is taken apart on the wire (`wirescan.group`, spans kept byte for
byte, never decoded) and each span goes to one of `BUCKETS` buckets by a hash of its trace
id (crc32: the same in every process), so that all spans of a trace, wherever they are in
the input, end up in one bucket. Each worker appends its pieces to its own spill file per
bucket (`w<worker>-b<bucket>.spill`); a record there is a 4-byte length and a 4-byte span
count, then an `ExportTraceServiceRequest` encoding.

After the input is read, the buckets are dealt into partitions of about equal size, as
many as the workers or more, so that none is larger than the partition budget: a
partition is what one worker holds in memory at a time (`groupbytrace` holds every span
of it until the end, as a trace is complete only when the input ends).

Spans that cannot be placed are rejected here, counted and listed: a span without a trace
id of 16 bytes or a span id of 8 bytes (or with a parent span id of another length than 0
or 8) cannot belong to a trace.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from pipeline import wirescan, wiresplit
from pipeline.otlpwire import TAG_1, TAG_2, varint

__all__ = ["BUCKETS", "Spill", "bucket_of", "plan", "read_records", "split"]

BUCKETS = 256
_HDR = struct.Struct(">II")
_FILE_BUFFER = 1 << 16


def bucket_of(trace_id: bytes) -> int:
    return zlib.crc32(trace_id) % BUCKETS


def _bad_ids(raw: bytes) -> list[tuple[bool, str]]:
    """Per span in wire order: (bad, why)."""
    out: list[tuple[bool, str]] = []
    for s in wirescan.spans(raw):
        tid, key, parent = s[3], s[4], s[5]
        if len(tid) != 16:
            out.append((True, f"trace id of {len(tid)} bytes"))
        elif len(key) != 24:
            out.append((True, f"span id of {len(key) - len(tid)} bytes"))
        elif parent and len(parent) != 24:
            out.append((True, f"parent span id of {len(parent) - len(tid)} bytes"))
        else:
            out.append((False, ""))
    return out


def split(raw: bytes, ids_ok: bool) -> tuple[dict[int, tuple[list[bytes], int]], int, str]:
    """The batch's spans by bucket: bucket -> (framed `resource_spans` fields, spans); and
    the spans rejected for their ids, with why (the first reason). `ids_ok`: what
    `wirescan.validate` said of the batch (when False, the spans are checked one by one)."""
    rejected = 0
    why = ""
    if not ids_ok:
        bad = _bad_ids(raw)
        refs = wiresplit.parse(raw)
        keep = []
        for ref, (is_bad, reason) in zip(refs, bad, strict=True):
            if is_bad:
                rejected += 1
                why = why or reason
            else:
                keep.append(ref)
        raw = wiresplit.build(keep) if keep else b""
    out: dict[int, tuple[list[bytes], int]] = {}
    if not raw:
        return out, rejected, why
    groups, _ = wirescan.group(raw)
    for (r0, r1), (s0, s1), by_tid in groups:
        per: dict[int, tuple[list[bytes], int]] = {}
        for tid, (blob, n) in by_tid.items():
            b = zlib.crc32(tid) % BUCKETS
            got = per.get(b)
            if got is None:
                per[b] = ([blob], n)
            else:
                got[0].append(blob)
                per[b] = (got[0], got[1] + n)
        for b, (blobs, n) in per.items():
            ss = b"".join((s0, *blobs, s1))
            rs = b"".join((r0, TAG_2, varint(len(ss)), ss, r1))
            field = TAG_1 + varint(len(rs)) + rs
            got2 = out.get(b)
            if got2 is None:
                out[b] = ([field], n)
            else:
                got2[0].append(field)
                out[b] = (got2[0], got2[1] + n)
    return out, rejected, why


class Spill:
    """One worker's spill files, one per bucket it has spans for (opened on first use)."""

    def __init__(self, directory: str, worker: int) -> None:
        self.directory = directory
        self.worker = worker
        self._files: dict[int, BinaryIO] = {}
        self.sizes: dict[int, int] = {}  # bucket -> bytes written

    def path(self, bucket: int) -> str:
        return spill_path(self.directory, self.worker, bucket)

    def write(self, bucket: int, fields: list[bytes], spans: int) -> None:
        fh = self._files.get(bucket)
        if fh is None:
            fh = self._files[bucket] = open(self.path(bucket), "ab", _FILE_BUFFER)  # noqa: SIM115
        body = b"".join(fields)
        fh.write(_HDR.pack(len(body), spans))
        fh.write(body)
        self.sizes[bucket] = self.sizes.get(bucket, 0) + len(body) + _HDR.size

    def close(self) -> None:
        for fh in self._files.values():
            fh.close()
        self._files.clear()


def spill_path(directory: str, worker: int, bucket: int) -> str:
    return os.path.join(directory, f"w{worker}-b{bucket}.spill")


def read_records(
    directory: str, workers: int, buckets: list[int]
) -> Iterator[tuple[int, bytes, int]]:
    """(bucket, encoding, spans) of every record spilled for `buckets`, by any worker."""
    for b in buckets:
        for w in range(workers):
            path = spill_path(directory, w, b)
            if not os.path.exists(path):
                continue
            with open(path, "rb") as fh:
                data = fh.read()
            pos = 0
            end = len(data)
            while pos < end:
                size, spans = _HDR.unpack_from(data, pos)
                pos += _HDR.size
                yield b, data[pos : pos + size], spans
                pos += size


def plan(sizes: dict[int, int], workers: int, budget: int) -> list[list[int]]:
    """Buckets dealt into partitions: a multiple of `workers` of them (at least as many
    as the workers, when there is that much to share), each about `total / count` bytes
    and at most `budget` where a bucket allows. Deterministic for given sizes."""
    total = sum(sizes.values())
    if total == 0:
        return []
    count = max(1, -(-total // budget))
    count = -(-count // workers) * workers
    count = min(count, len([b for b in sizes if sizes[b]]))
    target = total / count
    parts: list[list[int]] = [[]]
    filled = 0
    for b in sorted(sizes):
        n = sizes[b]
        if not n:
            continue
        if parts[-1] and filled + n / 2 > target and len(parts) < count:
            parts.append([])
            filled = 0
        parts[-1].append(b)
        filled += n
    return parts
