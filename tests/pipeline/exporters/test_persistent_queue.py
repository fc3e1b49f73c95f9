"""The persistent sending queue on its own: order, capacity, out-of-order acks, segment
reclamation, restart, torn and corrupt records, and kill -9 in the middle of writes."""

from __future__ import annotations

import ast
import asyncio
import os
import random
import signal
import struct
import subprocess
import sys
import textwrap

import pytest

from pipeline.configtypes import Duration, QueueConfig
from pipeline.exporters.persistent_queue import PersistentQueue
from pipeline.pdata import Delivery, Traces


def cfg(path, **kw) -> QueueConfig:
    kw.setdefault("fsync", "never")
    return QueueConfig(storage=str(path), **kw)


def batch(i: int, size: int = 100, spans: int = 1) -> Traces:
    body = struct.pack(">I", i) + bytes([i % 251]) * (size - 4)
    return Traces(raw=body, span_count=spans)


def ident(t: Traces) -> int:
    return int(struct.unpack(">I", t.to_bytes()[:4])[0])


async def take(q: PersistentQueue, n: int) -> list[tuple[int, object]]:
    out = []
    for _ in range(n):
        t, done = await asyncio.wait_for(q.get(), 5)
        out.append((ident(t), done))
    return out


def segments(q: PersistentQueue) -> list[str]:
    return sorted(f for f in os.listdir(q.dir) if f.endswith(".wal"))


async def test_fifo_and_capacity_in_requests(tmp_path):
    q = PersistentQueue(cfg(tmp_path, queue_size=3), "otlp/a")
    assert [q.offer(batch(i)) for i in range(4)] == [True, True, True, False]
    assert q.size() == 3 and q.capacity == 3
    got = await take(q, 2)
    assert [i for i, _ in got] == [0, 1]
    assert q.size() == 1  # waiting to be sent
    # in flight still counts against the capacity: it is on disk until acked
    assert not q.offer(batch(9))
    got[0][1]()
    assert q.offer(batch(3)) and q.size() == 2
    q.close()


async def test_sizer_bytes_and_items(tmp_path):
    qb = PersistentQueue(cfg(tmp_path / "b", sizer="bytes", queue_size=250), "x")
    assert qb.offer(batch(0, size=100)) and qb.offer(batch(1, size=100))
    assert not qb.offer(batch(2, size=100))
    assert qb.size() == 200
    qb.close()
    qi = PersistentQueue(cfg(tmp_path / "i", sizer="items", queue_size=10), "x")
    assert qi.offer(batch(0, spans=6)) and not qi.offer(batch(1, spans=6))
    qi.close()
    # one batch larger than the whole queue is taken when the queue is empty
    qo = PersistentQueue(cfg(tmp_path / "o", sizer="bytes", queue_size=10), "x")
    assert qo.offer(batch(0, size=100)) and not qo.offer(batch(1, size=5))
    qo.close()


async def test_wait_for_room(tmp_path):
    q = PersistentQueue(cfg(tmp_path, queue_size=1), "x")
    assert q.offer(batch(0))
    waiter = asyncio.ensure_future(q.wait_for_room())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    ((_, done),) = await take(q, 1)
    done()
    await asyncio.wait_for(waiter, 2)
    q.close()


async def test_restart_resends_everything_not_acked(tmp_path):
    q = PersistentQueue(cfg(tmp_path), "otlp_grpc/backend")
    for i in range(10):
        assert q.offer(batch(i))
    got = await take(q, 6)
    for i, done in got:
        if i % 2 == 0:
            done()  # 0, 2, 4 acked; 1, 3, 5 were in flight when we stopped
    q.close()
    q2 = PersistentQueue(cfg(tmp_path), "otlp_grpc/backend")
    assert q2.recovered == 7
    assert [i for i, _ in await take(q2, 7)] == [1, 3, 5, 6, 7, 8, 9]
    assert q2.empty()
    q2.close()


async def test_out_of_order_acks_reclaim_segments(tmp_path):
    q = PersistentQueue(cfg(tmp_path), "x", segment_bytes=1000)
    for i in range(50):
        assert q.offer(batch(i, size=200))
    assert len(segments(q)) >= 10
    got = await take(q, 50)
    random.Random(7).shuffle(got)
    for _, done in got[:25]:
        done()
        done()  # acking twice is harmless
    assert len(segments(q)) > 1
    for _, done in got[25:]:
        done()
    assert q.size() == 0 and len(segments(q)) == 1  # only the one being written
    q.close()
    q2 = PersistentQueue(cfg(tmp_path), "x", segment_bytes=1000)
    assert q2.recovered == 0 and q2.empty()
    # sequence numbers go on: a new record is never taken for an old, acked one
    assert q2.offer(batch(99))
    q2.close()
    q3 = PersistentQueue(cfg(tmp_path), "x", segment_bytes=1000)
    assert [i for i, _ in await take(q3, 1)] == [99]
    q3.close()


async def test_ack_log_is_compacted(tmp_path):
    q = PersistentQueue(cfg(tmp_path), "x", segment_bytes=2000)
    for round_ in range(30):
        for i in range(200):
            assert q.offer(batch(round_ * 200 + i, size=50))
        for _, done in await take(q, 200):
            done()
    assert os.path.getsize(os.path.join(q.dir, "acks.log")) < 12 * 6000 / 2
    q.close()
    q2 = PersistentQueue(cfg(tmp_path), "x")
    assert q2.recovered == 0
    q2.close()


def _only_segment(q_dir: str) -> str:
    (name,) = [
        f
        for f in os.listdir(q_dir)
        if f.endswith(".wal") and os.path.getsize(os.path.join(q_dir, f))
    ]
    return os.path.join(q_dir, name)


async def test_torn_tail_is_discarded(tmp_path):
    q = PersistentQueue(cfg(tmp_path), "x")
    for i in range(5):
        q.offer(batch(i, size=1000))
    q.close()
    seg = _only_segment(q.dir)
    size = os.path.getsize(seg)
    os.truncate(seg, size - 300)  # the last record was cut short by a crash
    q2 = PersistentQueue(cfg(tmp_path), "x")
    assert q2.skipped_bytes > 0
    assert [i for i, _ in await take(q2, 4)] == [0, 1, 2, 3]
    assert q2.empty()
    assert q2.offer(batch(7))  # the queue goes on working
    q2.close()
    q3 = PersistentQueue(cfg(tmp_path), "x")
    assert [i for i, _ in await take(q3, 5)] == [0, 1, 2, 3, 7]
    q3.close()


async def test_a_cut_at_any_byte_of_the_last_record_drops_only_that_record(tmp_path):
    q = PersistentQueue(cfg(tmp_path), "x")
    for i in range(3):
        q.offer(batch(i, size=300))
    q.close()
    seg = _only_segment(q.dir)
    with open(seg, "rb") as fh:
        data = fh.read()
    last = len(data) - (300 + 24)
    for cut in range(last, len(data), 7):
        with open(seg, "wb") as fh:
            fh.write(data[:cut])
        for leftover in os.listdir(q.dir):
            if leftover.endswith(".wal") and os.path.join(q.dir, leftover) != seg:
                os.remove(os.path.join(q.dir, leftover))
        os.remove(os.path.join(q.dir, "acks.log"))
        q2 = PersistentQueue(cfg(tmp_path), "x")
        assert [i for i, _ in await take(q2, 2)] == [0, 1], cut
        assert q2.empty()
        q2.close()


async def test_corrupt_record_in_the_middle_is_skipped(tmp_path):
    q = PersistentQueue(cfg(tmp_path), "x")
    for i in range(5):
        q.offer(batch(i, size=1000))
    q.close()
    seg = _only_segment(q.dir)
    with open(seg, "r+b") as fh:
        fh.seek(2 * 1024 + 500)  # inside record 2
        fh.write(b"\xff\xfe")
    q2 = PersistentQueue(cfg(tmp_path), "x")
    assert [i for i, _ in await take(q2, 4)] == [0, 1, 3, 4]
    q2.close()


async def test_garbage_files_do_not_poison_the_queue(tmp_path):
    q = PersistentQueue(cfg(tmp_path), "x")
    q.offer(batch(1))
    q.close()
    rnd = random.Random(3)
    with open(os.path.join(q.dir, "seg-00000000000000000077.wal"), "wb") as fh:
        fh.write(bytes(rnd.getrandbits(8) for _ in range(5000)) + b"TSQ1" + b"\0" * 40)
    with open(os.path.join(q.dir, "acks.log"), "ab") as fh:
        fh.write(b"\x01\x02\x03\x04\x05")  # a torn ack
    q2 = PersistentQueue(cfg(tmp_path), "x")
    assert [i for i, _ in await take(q2, 1)] == [1]
    q2.close()


async def test_one_process_per_directory(tmp_path):
    q = PersistentQueue(cfg(tmp_path), "x")
    with pytest.raises(OSError, match="in use"):
        PersistentQueue(cfg(tmp_path), "x")
    q.close()
    PersistentQueue(cfg(tmp_path), "x").close()


async def test_deliveries_released_after_send_or_at_close(tmp_path):
    results: list[bool] = []
    d1, d2 = Delivery(results.append), Delivery(results.append)
    q = PersistentQueue(cfg(tmp_path), "x")
    for d in (d1, d2):
        t = Traces(raw=b"\0\0\0\0abc", span_count=1, deliveries=(d,))
        assert q.offer(t)
        t.retain()
        d.release()  # the source's own share
    t, done = await q.get()
    done()
    t.release(True)
    assert results == [True]
    q.close()  # the second one is safe on disk
    assert results == [True, True]


@pytest.mark.parametrize("policy", ["always", "batch"])
async def test_fsync_policies_round_trip(tmp_path, policy):
    q = PersistentQueue(
        cfg(tmp_path, fsync=policy, fsync_interval=Duration(0.01)), "x", segment_bytes=500
    )
    for i in range(20):
        assert q.offer(batch(i, size=100))
    await asyncio.sleep(0.05)  # let the batch fsync run at least once
    q.close()
    q2 = PersistentQueue(cfg(tmp_path), "x")
    assert [i for i, _ in await take(q2, 20)] == list(range(20))
    q2.close()


CHILD = textwrap.dedent(
    """
    import asyncio, random, struct, sys
    from pipeline.configtypes import QueueConfig
    from pipeline.exporters.persistent_queue import PersistentQueue
    from pipeline.pdata import Traces

    async def main():
        q = PersistentQueue(QueueConfig(storage=sys.argv[1], fsync=sys.argv[2],
                                        queue_size=1 << 40, sizer="bytes"),
                            "x", segment_bytes=1 << 20)
        rnd = random.Random(int(sys.argv[3]))
        i = int(sys.argv[4])
        while True:
            size = rnd.choice((64, 4096, 200_000, 900_000))
            body = struct.pack(">I", i) + bytes([i % 251]) * size
            assert q.offer(Traces(raw=body, span_count=1))
            print("offered", i, flush=True)
            if rnd.random() < 0.4 and not q.empty():
                t, done = await q.get()
                j = struct.unpack(">I", t.to_bytes()[:4])[0]
                print("acking", j, flush=True)
                done()
                print("acked", j, flush=True)
            i += 1
            await asyncio.sleep(0)

    asyncio.run(main())
    """
)


async def _drain(path) -> tuple[list[int], bool]:  # type: ignore[no-untyped-def]
    q = PersistentQueue(cfg(path, queue_size=1 << 40, sizer="bytes"), "x")
    found: list[int] = []
    intact = True
    while not q.empty():
        t, _done = await q.get()
        raw = t.to_bytes()
        i = ident(t)
        intact &= set(raw[4:]) <= {i % 251}
        found.append(i)
    q.close()
    return found, intact


@pytest.mark.parametrize("policy", ["never", "always"])
def test_kill_9_mid_write_loses_nothing_offered(tmp_path, policy):
    """A child process offers and acks as fast as it can and is killed at random moments;
    every batch whose offer returned and whose ack did not start is found again, intact,
    and no acked batch comes back."""
    seen: dict[str, set[int]] = {"offered": set(), "acking": set(), "acked": set()}
    rnd = random.Random(11)
    next_id = 0
    for round_ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path), policy, str(round_), str(next_id)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        kill_after = rnd.randint(20, 200)
        for n, line in enumerate(proc.stdout):
            word, num = line.split()
            seen[word].add(int(num))
            if n >= kill_after:
                proc.send_signal(signal.SIGKILL)
                break
        # the kill can cut the child's last line short: only whole lines count
        for line in proc.communicate()[0].split("\n")[:-1]:
            word, num = line.split()
            seen[word].add(int(num))
        # the parent reads what survived; the next child appends to the same queue
        found, intact = asyncio.run(_drain(tmp_path))
        must = seen["offered"] - seen["acking"]
        assert must <= set(found), sorted(must - set(found))[:10]
        assert not (set(found) & seen["acked"])
        assert intact
        assert found == sorted(found)
        next_id = max(seen["offered"] | set(found)) + 1000


DISK_FULL_CHILD = textwrap.dedent(
    """
    import asyncio, resource, signal, struct, sys
    from pipeline.configtypes import QueueConfig
    from pipeline.exporters.persistent_queue import PersistentQueue
    from pipeline.pdata import Traces

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
    resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))

    async def main():
        q = PersistentQueue(QueueConfig(storage=sys.argv[1], fsync="never"), "x")
        ok = [q.offer(Traces(raw=struct.pack(">I", i) + b"x" * 9_000, span_count=1)) for i in range(8)]
        print("offers", ok)
        got = []
        while not q.empty():
            t, done = await q.get()
            got.append(struct.unpack(">I", t.to_bytes()[:4])[0])
            done()
        print("got", got)
        q.close()

    asyncio.run(main())
    """
)


def test_a_full_disk_refuses_and_keeps_the_queue_intact(tmp_path):
    r = subprocess.run(
        [sys.executable, "-c", DISK_FULL_CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    offers = ast.literal_eval(r.stdout.splitlines()[0].removeprefix("offers "))
    got = ast.literal_eval(r.stdout.splitlines()[1].removeprefix("got "))
    assert offers[:5] == [True] * 5 and not all(offers)  # refused once the disk is "full"
    assert got == [i for i, ok in enumerate(offers) if ok]  # what was accepted is intact
    assert "cannot write to the sending queue" in r.stderr
