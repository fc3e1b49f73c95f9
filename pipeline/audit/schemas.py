"""The first validation error of each schema-invalid tool result, for the report.

`cleanliness` only says that a trace has a tool result that fails its schema
(`tool_schema_invalid`); for the traces it says so of, this reads their tool spans again
(named as cleanliness names them: `execute_tool X`, Traceloop `X.tool`, else the first
tool-name attribute present; the result from `tool_result_key`, then the built-in keys)
and asks `jsonschema-rs` for the first error of each failing result.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import jsonschema_rs
import msgspec

from pipeline import wirescan
from pipeline.wholetraces import TraceView
from processors.cleanliness import CleanlinessConfig
from processors.genai.tools import name_from_span

__all__ = ["SchemaErrors"]

_TOOL_NAME_KEYS = ("gen_ai.tool.name", "tool.name", "traceloop.entity.name")
_TOOL_RESULT_KEYS = ("gen_ai.tool.call.result", "output.value", "traceloop.entity.output")
_ERROR = 2
_CACHE: dict[str, SchemaErrors | None] = {}


class SchemaErrors:
    def __init__(
        self, validators: dict[str, Any], result_keys: tuple[str, ...], name_keys: tuple[str, ...]
    ) -> None:
        self.validators = validators
        slots: dict[str, tuple[int, int]] = {}
        for slot, keys in enumerate((result_keys, name_keys)):
            for prio, k in enumerate(keys):
                slots.setdefault(k, (slot, prio))
        self.slots = wirescan.Slots(slots)

    @classmethod
    def for_config(cls, cfg: CleanlinessConfig) -> SchemaErrors | None:
        """For cleanliness' `tool_schemas` (None when it has none); loaded once."""
        if cfg.tool_schemas is None:
            return None
        key = f"{cfg.tool_schemas}\0{cfg.tool_result_key}\0{','.join(cfg.attributes.tool_name)}"
        if key in _CACHE:
            return _CACHE[key]
        validators: dict[str, Any] = {}
        directory = cfg.tool_schemas
        for name in sorted(os.listdir(directory)):
            if not name.endswith(".json"):
                continue
            try:
                with open(os.path.join(directory, name), "rb") as fh:
                    validators[name[:-5]] = jsonschema_rs.validator_for(
                        msgspec.json.decode(fh.read())
                    )
            except (OSError, ValueError, msgspec.DecodeError):
                continue  # cleanliness checked them when the config was loaded
        result_keys = (
            (cfg.tool_result_key, *_TOOL_RESULT_KEYS) if cfg.tool_result_key else _TOOL_RESULT_KEYS
        )
        got = cls(validators, result_keys, (*cfg.attributes.tool_name, *_TOOL_NAME_KEYS))
        _CACHE[key] = got
        return got

    def errors(self, v: TraceView) -> list[tuple[str, str]]:
        """(tool, first validation error) of each successful tool result of the trace that
        fails its tool's schema."""
        out: list[tuple[str, str]] = []
        raw = v.raw
        for s in v.spans:
            if s[8] == _ERROR:
                continue
            named = name_from_span(s[1])
            if named is not None and named not in self.validators:
                continue
            got, _ = wirescan.collect(raw, s[9], s[10], self.slots, None)
            result, attr_name = got[0], got[1]
            name = named or (attr_name if isinstance(attr_name, str) else "")
            validator = self.validators.get(name)
            if validator is None or result is None:
                continue
            value = result
            if isinstance(value, str):
                with contextlib.suppress(msgspec.DecodeError):
                    value = msgspec.json.decode(value)
            error = _first_error(validator, value)
            if error is not None:
                out.append((name, error))
        return out


def _first_error(validator: Any, value: Any) -> str | None:
    try:
        for err in validator.iter_errors(value):
            where = "/".join(str(p) for p in getattr(err, "instance_path", ()) or ())
            msg = getattr(err, "message", None) or str(err)
            return f"{msg} at /{where}" if where else str(msg)
    except ValueError as exc:  # a value JSON cannot hold
        return str(exc)
    return None
