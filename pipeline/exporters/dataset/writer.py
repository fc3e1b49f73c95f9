"""Dataset files: examples and their provenance, one line each, in the same order, written
so that a finished file is always whole.

A `Segment` is one data file and its provenance sidecar. Lines go to `<file>.partial`
(and `<sidecar>.partial`); when the segment is finished (it would pass
`rotation.max_megabytes`, or at shutdown) both are flushed, fsynced and renamed into place,
the sidecar first: a data file that exists is complete, with its provenance beside it.

Names, for `path: data/train.jsonl`: the first finished segment is `data/train.jsonl`
when no such file exists, the next ones `data/train-<UTC time>.jsonl` (as the `file`
exporter names its backups); a sidecar is its data file's name with `.provenance` before
the extension (`data/train.provenance.jsonl`). `replace=True` (an audit, which builds the
whole set) overwrites `path` instead.

A `.partial` left by a run that stopped abruptly is taken up again at start: its complete
lines are kept (as many as both files have: data and provenance stay in step), a torn
last line cut off.

Deduplication across runs: `known_hashes` reads the `hash` of every provenance line of
the set's files (the hash is the line's first field).
"""

from __future__ import annotations

import datetime
import glob
import os
from typing import IO

__all__ = ["Segment", "known_hashes", "sidecar"]

_STAMP = "%Y-%m-%dT%H-%M-%S"


def sidecar(path: str) -> str:
    """The provenance file of data file `path`."""
    base, ext = os.path.splitext(path)
    return f"{base}.provenance{ext or '.jsonl'}"


def _complete_lines(path: str) -> tuple[int, list[int]]:
    """(size, end offset of each complete line) of a file."""
    ends: list[int] = []
    size = 0
    with open(path, "rb") as fh:
        pos = 0
        while True:
            chunk = fh.read(1 << 20)
            if not chunk:
                break
            i = chunk.find(b"\n")
            while i >= 0:
                ends.append(pos + i + 1)
                i = chunk.find(b"\n", i + 1)
            pos += len(chunk)
        size = pos
    return size, ends


class Segment:
    """One data file and its sidecar being written (see the module docstring)."""

    def __init__(self, path: str, max_bytes: int = 0, replace: bool = False) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.replace = replace
        self.partial = path + ".partial"
        self.prov_partial = sidecar(path) + ".partial"
        self._data: IO[bytes] | None = None
        self._prov: IO[bytes] | None = None
        self.size = 0
        self.lines = 0
        self.recovered = 0  # lines taken up from an earlier run's .partial
        self.dirty = False  # written since the last flush
        self.finished: list[str] = []  # data files finished by this writer

    def open(self) -> list[bytes]:
        """Start (or take up an earlier run's partial files); returns the hashes of the
        lines taken up."""
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        hashes: list[bytes] = []
        if self.replace:
            for p in (self.partial, self.prov_partial):
                if os.path.exists(p):
                    os.remove(p)
        elif os.path.exists(self.partial) or os.path.exists(self.prov_partial):
            hashes = self._recover()
        self._data = open(self.partial, "ab")  # noqa: SIM115 - held open
        self._prov = open(self.prov_partial, "ab")  # noqa: SIM115
        self.size = self._data.tell()
        return hashes

    def _recover(self) -> list[bytes]:
        for p in (self.partial, self.prov_partial):
            if not os.path.exists(p):
                open(p, "wb").close()
        _, d_ends = _complete_lines(self.partial)
        _, p_ends = _complete_lines(self.prov_partial)
        n = min(len(d_ends), len(p_ends))
        for p, ends in ((self.partial, d_ends), (self.prov_partial, p_ends)):
            with open(p, "r+b") as fh:
                fh.truncate(ends[n - 1] if n else 0)
        self.lines = self.recovered = n
        hashes: list[bytes] = []
        with open(self.prov_partial, "rb") as fh:
            for line in fh:
                got = _hash_of(line)
                if got is not None:
                    hashes.append(got)
        return hashes

    def write(self, data: bytes, prov: bytes) -> None:
        """One example (its line without the newline) and its provenance line."""
        if self._data is None or self._prov is None:
            raise RuntimeError("dataset segment is not open")
        n = len(data) + 1
        if self.max_bytes and self.size and self.size + n > self.max_bytes:
            self.finish()
            self.open()
        self._data.write(data + b"\n")
        self._prov.write(prov + b"\n")
        self.size += n
        self.lines += 1
        self.dirty = True

    def flush(self, fsync: bool) -> None:
        """Hand what was written to the OS (and, with `fsync`, to the disk)."""
        if not self.dirty or self._data is None or self._prov is None:
            return
        # provenance first: after a crash, data lines without provenance are cut off
        self._prov.flush()
        self._data.flush()
        if fsync:
            os.fsync(self._prov.fileno())
            os.fsync(self._data.fileno())
        self.dirty = False

    def finish(self) -> str | None:
        """Close the segment and put it in place; its data file's name (None: nothing was
        written, and no file is left)."""
        if self._data is None or self._prov is None:
            return None
        self.dirty = True
        self.flush(fsync=True)
        self._data.close()
        self._prov.close()
        self._data = self._prov = None
        if not self.lines and not self.replace:
            os.remove(self.partial)
            os.remove(self.prov_partial)
            return None
        name = self.path if self.replace or not os.path.exists(self.path) else self._stamped()
        os.replace(self.prov_partial, sidecar(name))
        os.replace(self.partial, name)
        _sync_dir(os.path.dirname(os.path.abspath(name)))
        self.finished.append(name)
        self.size = self.lines = 0
        return name

    def _stamped(self) -> str:
        base, ext = os.path.splitext(self.path)
        now = datetime.datetime.now(datetime.UTC)
        while True:
            name = f"{base}-{now.strftime(_STAMP)}.{now.microsecond // 1000:03d}{ext}"
            if not os.path.exists(name) and not os.path.exists(sidecar(name)):
                return name
            now += datetime.timedelta(milliseconds=1)


def _sync_dir(folder: str) -> None:
    """Make the renames durable."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _hash_of(line: bytes) -> bytes | None:
    # {"hash":"<32 hex>",...
    if line.startswith(b'{"hash":"') and len(line) >= 41:
        try:
            return bytes.fromhex(line[9:41].decode())
        except ValueError:
            return None
    return None


def known_hashes(path: str) -> set[bytes]:
    """The hashes of the examples in the finished files of the set `path` names (the data
    file and its rotated siblings)."""
    base, ext = os.path.splitext(path)
    out: set[bytes] = set()
    names = [
        sidecar(path),
        *glob.glob(glob.escape(base) + "-*" + glob.escape(".provenance" + (ext or ".jsonl"))),
    ]
    for name in names:
        if not os.path.isfile(name):
            continue
        with open(name, "rb") as fh:
            for line in fh:
                got = _hash_of(line)
                if got is not None:
                    out.add(got)
    return out
