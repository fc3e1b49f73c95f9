from collections.abc import Iterable
from typing import Any

SpanInfo = tuple[str, str, int, bytes, bytes, bytes, int, int, int, int, int]

class Slots:
    n: int
    keys: frozenset[str]
    events: int | None
    def __init__(
        self, keys: dict[str, tuple[int, int]] | Iterable[str], events: int = -1
    ) -> None: ...

def spans(raw: bytes, /) -> list[SpanInfo]: ...
def attributes(
    raw: bytes, start: int, end: int, keys: frozenset[str] | Slots | None, unset: Any = ..., /
) -> list[tuple[str, Any]]: ...
def collect(
    raw: bytes, start: int, end: int, slots: Slots, unset: Any, /
) -> tuple[list[Any], int]: ...
def events(
    raw: bytes, start: int, end: int, names: Slots, keys: Slots, /
) -> list[tuple[int, str, list[tuple[str, Any]]]]: ...
def ranges(
    raw: bytes,
    start: int,
    end: int,
    attr_prefixes: tuple[bytes, ...],
    event_prefixes: tuple[bytes, ...],
    /,
) -> list[tuple[int, int] | None]: ...
def unflatten(
    raw: bytes, start: int, end: int, prefixes: tuple[bytes, ...], unset: Any, /
) -> list[dict[int, tuple[dict[str, Any], dict[str, dict[int, dict[str, Any]]]]]]: ...
def splice(raw: bytes, patches: list[tuple[int, bytes, frozenset[str] | None]], /) -> bytes: ...
def untrack(objects: list[Any], /) -> None: ...
def group(
    raw: bytes, /
) -> tuple[
    list[tuple[tuple[bytes, bytes], tuple[bytes, bytes], dict[bytes, tuple[bytes, int]]]],
    set[bytes],
]: ...
def check(
    raw: bytes, table: bytes, span_type: int, span_field: int, kv_type: int, any_type: int, /
) -> tuple[int, bool]: ...
