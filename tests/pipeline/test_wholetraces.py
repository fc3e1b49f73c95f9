"""`pipeline.wholetraces` and the `Traces` byte-range operations under it: whole traces
read, cut and patched on the wire, checked against protobuf's decoding."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pipeline.pdata import Traces
from pipeline.testing import attrs, kv, make_span, make_traces, sample_request
from pipeline.wholetraces import (
    TraceEntry,
    TraceIndex,
    aligned,
    select,
    split,
    trace_attribute,
    trace_values,
    trace_views,
)
from processors.genai.write import attr_str

T1, T2, T3 = (bytes([i]) * 16 for i in range(1, 4))


def sid(n: int) -> bytes:
    return n.to_bytes(8, "big")


def spans_of(raw: bytes) -> list[tuple[str, Span]]:
    """(service.name, span) of every span of an encoding, in order."""
    req = ExportTraceServiceRequest.FromString(raw)
    out = []
    for rs in req.resource_spans:
        service = {a.key: a.value.string_value for a in rs.resource.attributes}["service.name"]
        for ss in rs.scope_spans:
            out += [(service, s) for s in ss.spans]
    return out


def interleaved() -> Traces:
    """Two resources; spans of three traces interleaved in each (not trace-aligned)."""
    a = make_traces(
        [
            make_span("r1", T1, sid(1), attributes={"k": "on-root"}),
            make_span("x2", T2, sid(2), sid(9), status=2),
            make_span("c1", T1, sid(3), sid(1), attributes={"k": "on-child", "n": 5}),
        ],
        service="a",
    )
    b = make_traces(
        [
            make_span("y2", T2, sid(4), sid(9), attributes={"k": "late-one"}),
            make_span("r3", T3, sid(5)),
        ],
        service="b",
    )
    return Traces(raw=a.to_bytes() + b.to_bytes())


def check_aligned(t: Traces) -> TraceIndex:
    t.to_bytes()  # pending patches spliced in
    idx = aligned(t)
    raw = t.to_bytes()
    assert idx.raw is raw and t.trace_index is idx
    assert idx.entries[0].byte_start == 0 and idx.entries[-1].byte_end == len(raw)
    for prev, e in zip(idx.entries, idx.entries[1:], strict=False):
        assert prev.byte_end == e.byte_start
    for e in idx.entries:
        got = spans_of(raw[e.byte_start : e.byte_end])
        assert {s.trace_id for _, s in got} == {e.trace_id}
        assert len(got) == e.span_count
    return idx


def test_a_batch_not_aligned_is_regrouped_by_trace_keeping_every_span_byte_for_byte():
    t = interleaved()
    before = sorted((svc, s.SerializeToString()) for svc, s in spans_of(t.to_bytes()))
    old = TraceIndex([TraceEntry(T2, 2, "late", facts={"x": 1})], None)
    t.trace_index = old
    idx = check_aligned(t)
    assert [e.trace_id for e in idx.entries] == [T1, T2, T3]
    # what an older index said about a trace is kept by trace id
    assert [e.release for e in idx.entries] == ["", "late", ""]  # "": not released by a holder
    assert idx.entries[1].facts == {"x": 1}
    assert [e.frames for e in idx.entries] == [1, 2, 1]  # T2 has spans under both resources
    after = sorted((svc, s.SerializeToString()) for svc, s in spans_of(t.to_bytes()))
    assert after == before
    assert t.span_count == 5


def test_splicing_patches_keeps_the_index_it_only_moves_the_ranges():
    t = interleaved()
    idx = check_aligned(t)
    views = trace_views(t, settle=False)
    base = t.base
    for v in views:
        assert v.root is None or v.root[5] == b""
        t.patch(base, v.spans[0][9], attr_str("sieve.x", v.trace_id.hex()[:4]))
    raw = t.to_bytes()  # one splice of the whole batch
    assert raw is not base
    assert aligned(t) is idx and check_aligned(t) is idx
    for e in idx.entries:
        first = spans_of(raw[e.byte_start : e.byte_end])[0][1]
        assert attrs(first)["sieve.x"] == e.trace_id.hex()[:4]


def test_settle_splices_range_by_range_the_same_bytes_as_one_splice():
    t, u = interleaved(), interleaved()
    for b in (t, u):
        aligned(b)
        for v in trace_views(b, settle=False):
            for s in v.spans:
                b.patch(b.base, s[9], attr_str("sieve.n", s[1]), frozenset({"k"}))
    views = trace_views(t)  # settles
    assert not t.pending
    assert t.to_bytes() == u.to_bytes()
    for v in views:
        e = v.entry
        got = spans_of(t.base[e.byte_start : e.byte_end])
        assert [attrs(s)["sieve.n"] for _, s in got] == [s.name for _, s in got]
        assert all("k" not in attrs(s) for _, s in got)
        assert [s[1] for s in v.spans] == [s.name for _, s in got]


def test_select_and_split_cut_whole_traces_with_their_pending_patches():
    t = interleaved()
    aligned(t)
    views = trace_views(t, settle=False)
    for v in views:
        t.patch(t.base, v.spans[-1][9], attr_str("sieve.tag", v.spans[-1][1]))
    kept = select(t, views, [False, True, True])
    assert kept is not None and kept is not t and kept.span_count == 3
    assert kept.pending
    idx = check_aligned(kept)
    assert [e.trace_id for e in idx.entries] == [T2, T3]
    got = {s.name: attrs(s).get("sieve.tag") for _, s in spans_of(kept.to_bytes())}
    assert got == {"x2": None, "y2": "y2", "r3": "r3"}
    assert select(t, views, [True] * 3) is t
    assert select(t, views, [False] * 3) is None
    parts = split(t, views, [0, 1, 0])
    assert sorted(parts) == [0, 1]
    assert [e.trace_id for e in check_aligned(parts[0]).entries] == [T1, T3]
    assert {s.name for _, s in spans_of(parts[1].to_bytes())} == {"x2", "y2"}
    assert attrs(spans_of(parts[0].to_bytes())[1][1])["sieve.tag"] == "c1"


def released(release: str = "root") -> Traces:
    """`interleaved()` as groupbytrace hands it on: aligned, each trace with a release and
    a fact, a patch pending."""
    t = interleaved()
    idx = aligned(t)
    for e, r in zip(idx.entries, (release, "late", release), strict=True):
        e.release = r
        e.facts["sieve.trace.class"] = f"class-{e.trace_id[0]}"
    v = trace_views(t, settle=False)[0]
    t.patch(t.base, v.spans[0][9], attr_str("sieve.x", "1"))
    return t


def said(idx: TraceIndex) -> list[tuple[bytes, str, dict[str, Any]]]:
    return [(e.trace_id, e.release, e.facts) for e in idx.entries]


def test_a_copy_has_its_own_copy_of_the_trace_index():
    t = released()
    want = said(t.trace_index)  # type: ignore[arg-type]
    c = t.copy()
    assert c.trace_index is not None and c.trace_index is not t.trace_index
    assert said(check_aligned(c)) == want  # the ranges found again in the copy's bytes
    c.trace_index.entries[0].facts["sieve.trace.class"] = "changed"
    c.mutable(None)  # every fact of the copy goes, none of the original's
    assert said(check_aligned(t)) == want
    assert [e.facts for e in check_aligned(c).entries] == [{}, {}, {}]
    assert t.copy(bare=True).trace_index is None


def test_a_merge_keeps_each_batchs_traces_and_releases_in_order():
    a, b = released(), released("wait")
    merged = Traces.merge([a, b])
    idx = check_aligned(merged)
    assert said(idx) == said(aligned(a)) + said(aligned(b))
    assert [len(v.spans) for v in trace_views(merged)] == [2, 2, 1, 2, 2, 1]
    assert Traces.merge([a, make_traces([make_span("n", T1, sid(7))])]).trace_index is None


def test_a_trace_and_its_late_fragment_regrouped_are_one_trace_not_late():
    t = interleaved()
    t.trace_index = TraceIndex(
        [
            TraceEntry(T2, 1, "late", facts={"f": "late"}),
            TraceEntry(T2, 1, "root", facts={"f": "whole"}),
            TraceEntry(T1, 2, "late"),
        ],
        None,
        relocatable=False,
    )
    idx = check_aligned(t)
    assert said(idx) == [(T1, "late", {}), (T2, "root", {"f": "whole"}), (T3, "", {})]


def test_split_parts_keep_what_the_index_says_of_their_traces():
    t = released()
    whole = {e.trace_id: (e.release, e.facts) for e in aligned(t).entries}
    parts = t.split(2)
    assert len(parts) == 3
    for part in parts:
        idx = check_aligned(part)
        assert idx.entries and all(whole[e.trace_id] == (e.release, e.facts) for e in idx.entries)


def test_trace_attributes_facts_then_root_then_its_resource_else_any_span():
    req = ExportTraceServiceRequest.FromString(interleaved().to_bytes())
    req.resource_spans[1].resource.attributes.append(kv("region", "eu"))
    t = Traces(req)
    v1, v2, v3 = trace_views(t)
    assert trace_attribute(v1, "k") == "on-root"  # the root's, not the child's
    assert trace_attribute(v1, "region") is None  # the root's resource has none
    assert trace_attribute(v3, "region") == "eu"  # the root's resource
    assert trace_attribute(v2, "k") == "late-one"  # no root: the first span carrying it
    assert trace_attribute(v2, "region") == "eu"
    assert trace_attribute(v2, "service.name") == "a"  # the first span's resource
    v1.entry.facts["k"] = "from-facts"
    assert trace_attribute(v1, "k") == "from-facts"
    values: dict[str, list[Any]] = trace_values(v1, frozenset({"k", "n", "service.name", "no"}))
    assert values == {"k": ["on-root", "on-child"], "n": [5], "service.name": ["a"]}
    assert trace_values(v3, frozenset({"k"})) == {}


def test_views_of_a_varied_request_match_protobuf():
    req = sample_request(7, n_spans=40, services=3)
    t = Traces(raw=req.SerializeToString())
    views = trace_views(t)
    decoded = {s.span_id: s for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans}
    assert sum(v.span_count for v in views) == len(decoded)
    for v in views:
        for info in v.spans:
            s = decoded[info[4][16:]]
            assert info[3] == s.trace_id == v.trace_id
            assert (info[6], info[7], info[8]) == (
                s.start_time_unix_nano,
                s.end_time_unix_nano,
                s.status.code,
            )
        roots = [s for s in v.spans if not s[5]]
        assert v.root == (roots[0] if roots else None)
