"""Tool results checked against their tools' JSON Schemas, read from the wire (for
`cleanliness`). Compiled with mypyc: it runs for every tool span of every trace.

A tool is named by its span name (`execute_tool X`, Traceloop `X.tool`, `tool.invoke:X`) or else by the
first tool-name key present; its result is the first result key present. A result that is
JSON text is checked as the value it encodes, any other value as it is. A result that fails
is explained by its first error: the JSON Pointer of the failing value in the result and
the validator's message (`failures`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, cast

import msgspec

from pipeline import wirescan
from pipeline.wirescan import Row, SpanInfo

__all__ = ["Failure", "ToolChecker", "Validator", "explain", "name_from_span", "valid"]

Validator = Callable[[Any], bool]  # True: valid
# a tool span whose result failed its schema: (span body start, JSON Pointer, message)
Failure = tuple[int, str, str]
_MAX_MESSAGE: Final = 300  # characters of a validator's message kept (it quotes the value)
_ERROR: Final = 2  # Status.STATUS_CODE_ERROR
_DECODE: Final = msgspec.json.Decoder().decode  # bound once: no attribute lookups per call
_COLLECT: Final = wirescan.collect


class ToolChecker:
    """The schemas by tool name, and the keys that name a tool and hold its result (each
    in priority order)."""

    def __init__(
        self,
        schemas: dict[str, Any],
        result_keys: tuple[str, ...],
        name_keys: tuple[str, ...],
    ) -> None:
        # compiled `jsonschema_rs` validators by tool name: `is_valid` checks, and an
        # invalid result is explained by `iter_errors`
        self.validators = schemas
        self.schemas: dict[str, Validator] = {k: v.is_valid for k, v in schemas.items()}
        self.name_keys = name_keys
        self.keys = frozenset((*name_keys, *result_keys))
        # slot 0: the result, slot 1: the name; each the first of its keys present
        slots: dict[str, tuple[int, int]] = {}
        for slot, keys in enumerate((result_keys, name_keys)):
            for prio, k in enumerate(keys):
                slots.setdefault(k, (slot, prio))
        self.slots = wirescan.Slots(slots)

    @staticmethod
    def by_trace(tool_spans: list[SpanInfo]) -> dict[bytes, list[Row]]:
        out: dict[bytes, list[Row]] = {}
        for s in cast("list[Row]", tool_spans):
            t: bytes = s[3]
            got = out.get(t)
            if got is None:
                out[t] = [s]
            else:
                got.append(s)
        return out

    def failures(self, tools: list[Row], raw: bytes) -> list[Failure]:
        """Every successful tool call whose result fails its tool's schema (`tools` are
        `wirescan.SpanInfo` of the encoding `raw`), with its first error."""
        schemas = self.schemas
        out: list[Failure] = []
        for s in tools:
            if s[8] == _ERROR:
                continue  # failed: retries and swallowed errors speak for it
            named = name_from_span(s[1])
            if named is not None and named not in schemas:
                continue
            b0: int = s[9]
            result, attr_name = self.fields(raw, b0, s[10])
            name = named or attr_name
            if not name or result is None:
                continue
            validate = schemas.get(name)
            if validate is not None and not valid(validate, result):
                path, message = explain(self.validators[name], result)
                out.append((b0, path, message))
        return out

    def fields(self, raw: bytes, b0: int, b1: int) -> tuple[Any, str]:
        """(result, tool name from attributes) of a tool span, in one pass."""
        found, mask = _COLLECT(raw, b0, b1, self.slots, None)
        result = found[0]
        name = found[1]
        if isinstance(name, str) and name:
            return result, name
        if not mask & 2:
            return result, ""
        # the first name key present is empty or not a string: the first one that is
        names: dict[str, str] = {}
        for k, value in wirescan.attributes(raw, b0, b1, self.keys, None):
            names[k] = value if isinstance(value, str) else ""
        for k in self.name_keys:
            got = names.get(k)
            if got:
                return result, got
        return result, ""


def name_from_span(name: str) -> str | None:
    """The tool's name when the span name says it (`execute_tool X`, Traceloop `X.tool`,
    the agent-tracing guide's `tool.invoke:X`)."""
    if name.startswith("execute_tool ") and len(name) > 13:
        return name[13:]
    if name.endswith(".tool") and len(name) > 5:
        return name[:-5]
    if name.startswith("tool.invoke:") and len(name) > 12:
        return name[12:]
    return None


def valid(is_valid: Validator, result: Any) -> bool:
    """A result is JSON text (checked as the value it encodes), else checked as it is."""
    if isinstance(result, str):
        try:  # noqa: SIM105 (a context manager costs more, compiled)
            result = _DECODE(result)
        except msgspec.DecodeError:
            pass  # plain text: checked as a string
    try:
        return is_valid(result)
    except ValueError:  # a value JSON cannot hold (bytes, a NaN)
        return False


def explain(validator: Any, result: Any) -> tuple[str, str]:
    """(JSON Pointer of the failing value, message) of the first error of a result that
    `valid` refused; the pointer is "" when the whole result fails."""
    if isinstance(result, str):
        try:  # noqa: SIM105
            result = _DECODE(result)
        except msgspec.DecodeError:
            pass
    try:
        for err in validator.iter_errors(result):
            parts: list[str] = []
            for p in err.instance_path:
                parts.append("/" + str(p).replace("~", "~0").replace("/", "~1"))
            message: str = err.message
            if len(message) > _MAX_MESSAGE:
                message = message[: _MAX_MESSAGE - 1] + "\u2026"
            return "".join(parts), message
    except ValueError:  # a value JSON cannot hold
        return "", "the result is not a JSON value"
    return "", "the result does not match the schema"
