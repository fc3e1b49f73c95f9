"""Raw configuration maps: load, deep-merge and expand, as the OTel Collector's confmap does.

- `--config` sources: a file path, `file:PATH`, `env:VAR` (YAML in a variable) or
  `yaml:a::b::c: value` (one inline setting); later sources deep-merge over earlier ones,
  maps merge key by key, any other value (lists included) is replaced.
- `${env:VAR}`, `${VAR}` and `${env:VAR:-default}` expand inside string values. A value
  that is exactly one reference takes the YAML type of the variable's text (`"8"` -> 8);
  `$$` is a literal `$`. A variable that is not set and has no default expands to an
  empty string, as in the OTel Collector, with a warning naming it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import yaml

from pipeline.errors import ConfigError

_REF = re.compile(r"\$\$|\$\{([^}]*)\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def load_source(source: str) -> dict[str, Any]:
    if source.startswith("yaml:"):
        return _inline(source[5:])
    if source.startswith("env:"):
        name = source[4:]
        if name not in os.environ:
            raise ConfigError([f"--config {source}: environment variable {name!r} is not set"])
        return _parse(os.environ[name], source)
    path = source[5:] if source.startswith("file:") else source
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError([f"--config {path}: cannot read file: {exc.strerror}"]) from None
    return _parse(text, path)


def _parse(text: str, where: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        pos = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}: invalid YAML{pos}: {problem}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{where}: the top level must be a map, got {type(data).__name__}"])
    return data


def _inline(text: str) -> dict[str, Any]:
    """`yaml:a::b::c: value`: the path uses '::' and ends at the first ': '."""
    path, sep, value = text.partition(": ")
    if not sep or not path:
        raise ConfigError([f"--config yaml:{text}: want yaml:<path>: <value>"])
    try:
        node: Any = yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ConfigError([f"--config yaml:{text}: invalid YAML value: {exc}"]) from None
    for part in reversed(path.split("::")):
        node = {part: node}
    return node  # type: ignore[no-any-return]


def merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def expand(
    raw: Any,
    path: str = "",
    errors: list[str] | None = None,
    warnings: list[str] | None = None,
) -> Any:
    """Expand env references in every string of the tree; problems go to `errors`,
    variables that are not set (expanded to "") to `warnings`."""
    own = errors is None
    errors = [] if errors is None else errors
    warnings = [] if warnings is None else warnings
    if isinstance(raw, dict):
        out: Any = {
            k: expand(v, f"{path}::{k}" if path else str(k), errors, warnings)
            for k, v in raw.items()
        }
    elif isinstance(raw, list):
        out = [expand(v, f"{path}::{i}", errors, warnings) for i, v in enumerate(raw)]
    elif isinstance(raw, str) and "$" in raw:
        out = _expand_str(raw, path, errors, warnings)
    else:
        out = raw
    if own and errors:
        raise ConfigError(errors)
    return out


def _lookup(ref: str, path: str, errors: list[str], warnings: list[str]) -> str | None:
    body = ref[4:] if ref.startswith("env:") else ref
    name, sep, default = body.partition(":-")
    if ":" in name and not ref.startswith("env:"):
        errors.append(f"{path}: unsupported reference ${{{ref}}}: only env: is available")
        return None
    if not _NAME.match(name):
        errors.append(f"{path}: invalid environment variable name {name!r} in ${{{ref}}}")
        return None
    value = os.environ.get(name)
    if value is None:
        if sep:
            return default
        warnings.append(
            f"{path}: environment variable {name!r} is not set (${{{ref}}}); "
            "using an empty string, as the OTel Collector does"
        )
        return ""
    return value


def _expand_str(value: str, path: str, errors: list[str], warnings: list[str]) -> Any:
    m = _REF.fullmatch(value)
    if m and m.group(0) != "$$":
        text = _lookup(m.group(1), path, errors, warnings)
        if text is None:
            return value
        try:
            typed = yaml.safe_load(text)
        except yaml.YAMLError:
            return text
        return typed if isinstance(typed, str | int | float | bool) else text

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        text = _lookup(m.group(1), path, errors, warnings)
        return m.group(0) if text is None else text

    return _REF.sub(sub, value)


def resolve(
    sources: list[str], errors: list[str] | None = None, warnings: list[str] | None = None
) -> dict[str, Any]:
    """Load every source, deep-merge them in order and expand env references.

    Expansion problems go to `errors` when given (so that they are reported together
    with everything else found later), else they raise; warnings go to `warnings`."""
    if not sources:
        raise ConfigError(["no --config given"])
    merged: dict[str, Any] = {}
    load_errors: list[str] = []
    for src in sources:
        try:
            merged = merge(merged, load_source(src))
        except ConfigError as exc:
            load_errors += exc.errors
    if load_errors:
        raise ConfigError(load_errors)
    return expand(merged, "", errors, warnings)  # type: ignore[no-any-return]
