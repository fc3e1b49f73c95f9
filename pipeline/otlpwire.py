"""OTLP at the protobuf wire level: framing encoded pieces back into a request.

A length-delimited field is its tag, a varint length and the payload, so a request is
`b"".join` of framed resource groups, each of framed scope groups, each of framed spans.
Reading requests without decoding them is `pipeline.wirescan`'s (and `pipeline.wiresplit`'s).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "SPAN_KINDS",
    "STATUS_CODES",
    "TAG_1",
    "TAG_2",
    "TAG_3",
    "frame",
    "varint",
]

# field tags (field number << 3 | wire type 2)
TAG_1 = b"\x0a"  # resource / scope / resource_spans
TAG_2 = b"\x12"  # scope_spans / spans
TAG_3 = b"\x1a"  # schema_url

# the enums' names (OTLP/JSON and OTTL spell them) -> their numbers
SPAN_KINDS: Final = {
    "SPAN_KIND_UNSPECIFIED": 0,
    "SPAN_KIND_INTERNAL": 1,
    "SPAN_KIND_SERVER": 2,
    "SPAN_KIND_CLIENT": 3,
    "SPAN_KIND_PRODUCER": 4,
    "SPAN_KIND_CONSUMER": 5,
}
STATUS_CODES: Final = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}


def varint(n: int) -> bytes:
    """A protobuf varint; a negative int64 as its two's complement (ten bytes)."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def frame(tag: bytes, payload: bytes) -> bytes:
    """One length-delimited field."""
    return tag + varint(len(payload)) + payload
