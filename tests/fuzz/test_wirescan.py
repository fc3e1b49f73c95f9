"""pipeline.wirescan, C against Python against protobuf, on hypothesis-generated requests:
the hostile-but-well-formed requests of `strategies.requests`, encoded by protobuf and
re-encoded with the liberties the wire format allows (fields in any order, a scalar
given again after a decoy, a message field split in two occurrences that merge, a decoy
oneof member before the real one, an explicit default after a decoy, unknown fields and
groups anywhere, padded varints), and byte-level mutations of requests."""

from __future__ import annotations

import struct
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span

from pipeline import wirescan as w
from pipeline.otlpwire import varint
from processors.genai.write import attr_bool, attr_str, attr_strs
from tests.fuzz.budget import examples
from tests.fuzz.strategies import KEYS, mutated_bytes, requests
from tests.pipeline.wirescan_truth import (
    BOTH,
    PY,
    C,
    agree,
    canon,
    check_against_protobuf,
    pb_spans,
    truth_attrs,
    vi,
)

FD = FieldDescriptor
_VARINT = {FD.TYPE_INT32, FD.TYPE_INT64, FD.TYPE_UINT32, FD.TYPE_UINT64, FD.TYPE_BOOL, FD.TYPE_ENUM}
_FIXED = {
    FD.TYPE_FIXED64: (1, "<Q"),
    FD.TYPE_SFIXED64: (1, "<q"),
    FD.TYPE_DOUBLE: (1, "<d"),
    FD.TYPE_FIXED32: (5, "<I"),
    FD.TYPE_SFIXED32: (5, "<i"),
    FD.TYPE_FLOAT: (5, "<f"),
}
MAX_TAG, MAX_LEN, MAX_VARINT = 5, 5, 10  # bytes upb accepts (padded or not)


class Noisy:
    """A message's encoding that protobuf decodes to the same message, drawn with
    hypothesis; `noise` (0..1) is how often each liberty is taken."""

    def __init__(self, draw: st.DrawFn, noise: float) -> None:
        self.draw = draw
        self.noise = noise

    def maybe(self) -> bool:
        return self.noise > 0 and self.draw(st.floats(0, 1)) < self.noise

    def varint(self, n: int, limit: int = MAX_VARINT) -> bytes:
        room = limit - len(vi(n))
        return vi(n, self.draw(st.integers(0, room)) if room > 0 and self.maybe() else 0)

    def tag(self, number: int, wire: int) -> bytes:
        return self.varint(number << 3 | wire, MAX_TAG)

    def len_field(self, number: int, body: bytes) -> bytes:
        return self.tag(number, 2) + self.varint(len(body), MAX_LEN) + body

    def unknown(self, depth: int = 0) -> bytes:
        number = self.draw(st.integers(1000, 1010))
        wire = self.draw(st.sampled_from([0, 1, 2, 5] + ([3] if depth < 3 else [])))
        if wire == 0:
            return self.tag(number, 0) + self.varint(self.draw(st.integers(0, (1 << 64) - 1)))
        if wire == 1:
            return self.tag(number, 1) + self.draw(st.binary(min_size=8, max_size=8))
        if wire == 5:
            return self.tag(number, 5) + self.draw(st.binary(min_size=4, max_size=4))
        if wire == 2:
            return self.len_field(number, self.draw(st.binary(max_size=6)))
        inner = b"".join(self.unknown(depth + 1) for _ in range(self.draw(st.integers(0, 2))))
        return self.tag(number, 3) + inner + self.tag(number, 4)

    def scalar(self, fd: FieldDescriptor, value: Any) -> bytes:
        if fd.type in _VARINT:
            return self.tag(fd.number, 0) + self.varint(int(value))
        if fd.type in _FIXED:
            wire, fmt = _FIXED[fd.type]
            return self.tag(fd.number, wire) + struct.pack(fmt, value)
        data = value.encode() if fd.type == FD.TYPE_STRING else value
        return self.len_field(fd.number, data)

    def decoy(self, fd: FieldDescriptor) -> bytes:
        """An occurrence of `fd` that a later one overrides."""
        if fd.type in _VARINT:
            return self.tag(fd.number, 0) + self.varint(self.draw(st.integers(0, (1 << 64) - 1)))
        if fd.type in _FIXED:
            wire, _ = _FIXED[fd.type]
            size = 8 if wire == 1 else 4
            return self.tag(fd.number, wire) + self.draw(st.binary(min_size=size, max_size=size))
        bodies = [b"", b"\x0a\x00"] if fd.type == FD.TYPE_MESSAGE else [b"", b"decoy"]
        return self.len_field(fd.number, self.draw(st.sampled_from(bodies)))

    def field(self, fd: FieldDescriptor, value: Any) -> bytes:
        """One occurrence of a field (or two that merge), with decoys before it."""
        out = b""
        oneof = fd.containing_oneof
        if oneof is not None and self.maybe():  # another member first: the last one wins
            other = self.draw(st.sampled_from([f for f in oneof.fields if f is not fd]))
            out += self.decoy(other)
        if fd.type != FD.TYPE_MESSAGE:
            if not fd.is_repeated and self.maybe():
                out += self.decoy(fd)
            return out + self.scalar(fd, value)
        parts = self.parts(value)
        if not fd.is_repeated and self.maybe():  # two occurrences that merge
            cut = self.draw(st.integers(0, len(parts)))
            return (
                out
                + self.len_field(fd.number, b"".join(parts[:cut]))
                + self.len_field(fd.number, b"".join(parts[cut:]))
            )
        return out + self.len_field(fd.number, b"".join(parts))

    def parts(self, msg: Message) -> list[bytes]:
        """The message's fields (each field's occurrences together), in any order, with
        unknown fields and explicit defaults among them."""
        parts = []
        present = set()
        for fd, value in msg.ListFields():
            present.add(fd.name)
            items = value if fd.is_repeated else [value]
            parts.append(b"".join(self.field(fd, item) for item in items))
        for fd in msg.DESCRIPTOR.fields:
            if (
                fd.name not in present
                and not fd.is_repeated
                and fd.type != FD.TYPE_MESSAGE
                and fd.containing_oneof is None
                and self.maybe()
            ):  # a decoy, then the default value explicitly: the default wins
                default = fd.default_value
                parts.append(self.decoy(fd) + self.scalar(fd, default))
        parts = list(self.draw(st.permutations(parts))) if self.maybe() else parts
        for _ in range(self.draw(st.integers(0, 2)) if self.maybe() else 0):
            parts.insert(self.draw(st.integers(0, len(parts))), self.unknown())
        return parts


@st.composite
def noisy_requests(draw: st.DrawFn) -> tuple[ExportTraceServiceRequest, bytes]:
    req = draw(requests(max_spans=4))
    noise = draw(st.sampled_from([0.0, 0.1, 0.3, 0.7]))
    return req, b"".join(Noisy(draw, noise).parts(req))


APPENDS = [
    attr_str("sieve.a", "x"),
    attr_bool("sieve.b", False),
    attr_strs("sieve.d", ["p", ""]),
    b"",
    attr_str("k" * 130, "v" * 200),
]


@settings(max_examples=examples(60))
@given(noisy_requests(), st.data())
def test_noisy_requests(case: tuple[ExportTraceServiceRequest, bytes], data: st.DataObject) -> None:
    req, raw = case
    decoded = ExportTraceServiceRequest.FromString(raw)
    decoded.DiscardUnknownFields()
    assert decoded == req  # the encoding is what protobuf says it is
    keys = frozenset(data.draw(st.lists(st.sampled_from(KEYS), max_size=4)))
    for impl in BOTH:
        check_against_protobuf(impl, raw, keys, "")
        check_against_protobuf(impl, raw, keys, None)
    infos = PY.spans(raw)
    if w.NATIVE:
        assert C.spans(raw) == infos
        for info in infos:
            for ks, unset in ((None, None), (keys, "")):
                assert canon(C.attributes(raw, info[9], info[10], ks, unset)) == canon(
                    PY.attributes(raw, info[9], info[10], ks, unset)
                )

    # splice: some spans, some attributes appended and some dropped
    chosen = sorted(data.draw(st.sets(st.integers(0, max(len(infos) - 1, 0)))) if infos else [])
    patches = []
    want = ExportTraceServiceRequest.FromString(raw)
    spans = [s for _, s in pb_spans(want)]
    for i in chosen:
        add = data.draw(st.sampled_from(APPENDS))
        span_keys = [kv.key for kv in spans[i].attributes]
        drop = (
            frozenset(data.draw(st.lists(st.sampled_from(span_keys), max_size=2)))
            if span_keys
            else None
        )
        patches.append((infos[i][9], add, drop))
        kept = [kv for kv in spans[i].attributes if not drop or kv.key not in drop]
        del spans[i].attributes[:]
        spans[i].attributes.extend(kept)
        spans[i].attributes.extend(Span.FromString(add).attributes)
    outs = [impl.splice(raw, patches) for impl in BOTH]
    assert len(set(outs)) == 1
    assert ExportTraceServiceRequest.FromString(outs[0]) == want
    for impl in BOTH:
        after = impl.spans(outs[0])
        assert [a[:9] for a in after] == [b[:9] for b in infos]
        for i in chosen:
            got = impl.attributes(outs[0], after[i][9], after[i][10], None, None)
            assert canon(got) == canon(truth_attrs(spans[i], None, None))


@settings(max_examples=examples(120))
@given(mutated_bytes())
def test_mutated_requests(raw: bytes) -> None:
    """Return or raise WireError, never anything else; protobuf's results where protobuf
    decodes the bytes; C and Python alike."""
    agree(raw)


@settings(max_examples=examples(40))
@given(noisy_requests(), st.integers(0, 1 << 16), st.integers(0, 255))
def test_mutated_noisy_requests(
    case: tuple[ExportTraceServiceRequest, bytes], pos: int, value: int
) -> None:
    _, raw = case
    if raw:
        pos %= len(raw)
        agree(raw[:pos] + bytes([value]) + raw[pos + 1 :])
        agree(raw[:pos])


def _span_set(spans: Any) -> list[bytes]:
    out = []
    for s in spans:
        s.DiscardUnknownFields()
        out.append(s.SerializeToString(deterministic=True))
    return sorted(out)


@settings(max_examples=examples(40))
@given(noisy_requests(), st.integers(0, 1 << 16), st.integers(0, 255))
def test_group_regroups_what_protobuf_reads_and_c_agrees_with_python(
    case: tuple[ExportTraceServiceRequest, bytes], pos: int, value: int
) -> None:
    """`group`: every span once, under its trace id, with the resource and scope protobuf
    reads for it; roots found; the same outcome from C and Python, also on a mutation."""
    req, raw = case
    groups, rooted = w.group(raw)
    assert (groups, rooted) == w._py_group(raw)
    got: list[Any] = []
    for (res, url), (scope, surl), by_tid in groups:
        for tid, (blob, n) in by_tid.items():
            body = res + b"\x12" + varint(len(scope + blob + surl)) + scope + blob + surl + url
            part = ResourceSpans.FromString(body)
            part.DiscardUnknownFields()  # the noisy encodings add some
            (ss,) = part.scope_spans
            assert len(ss.spans) == n and {s.trace_id for s in ss.spans} == {tid}
            got += [(part.resource, part.schema_url, ss.scope, ss.schema_url, s) for s in ss.spans]
    want = [
        (rs.resource, rs.schema_url, ss.scope, ss.schema_url, s)
        for rs in req.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    ]
    assert _span_set(g[4] for g in got) == _span_set(x[4] for x in want)
    for r, u, sc, su, s in got:  # each span with its own resource and scope
        matches = [x for x in want if x[4].span_id == s.span_id and x[4].trace_id == s.trace_id]
        assert any((r, u, sc, su) == x[:4] for x in matches)
    assert rooted == {x[4].trace_id for x in want if not x[4].parent_span_id}
    if raw:
        pos %= len(raw)
        bad = raw[:pos] + bytes([value]) + raw[pos + 1 :]
        assert _checked(w.group, bad) == _checked(w._py_group, bad)


def _checked(check: Any, raw: bytes) -> Any:
    try:
        return check(raw)
    except w.WireError:
        return "WireError"


def _protobuf_count(raw: bytes) -> Any:
    try:
        req = ExportTraceServiceRequest.FromString(raw)
    except DecodeError:
        return "WireError"
    return sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)


@settings(max_examples=examples(150))
@given(mutated_bytes())
def test_check_accepts_exactly_what_protobuf_decodes(raw: bytes) -> None:
    want = _protobuf_count(raw)
    assert _checked(w.check, raw) == want
    assert _checked(w._py_check, raw) == want
    # validate: the same, and whether the decoded spans' ids have valid lengths
    if want != "WireError":
        req = ExportTraceServiceRequest.FromString(raw)
        ok = all(
            len(s.trace_id) in (0, 16)
            and len(s.span_id) in (0, 8)
            and len(s.parent_span_id) in (0, 8)
            for rs in req.resource_spans
            for ss in rs.scope_spans
            for s in ss.spans
        )
        assert _checked(w.validate, raw) == (want, ok)
    else:
        assert _checked(w.validate, raw) == want


@settings(max_examples=examples(40))
@given(noisy_requests(), st.integers(0, 1 << 16), st.integers(0, 255))
def test_check_on_noisy_requests_and_their_mutations(
    case: tuple[ExportTraceServiceRequest, bytes], pos: int, value: int
) -> None:
    _, raw = case
    assert _checked(w.check, raw) == _protobuf_count(raw)
    if raw:
        pos %= len(raw)
        for bad in (raw[:pos] + bytes([value]) + raw[pos + 1 :], raw[:pos]):
            assert _checked(w.check, bad) == _protobuf_count(bad)
