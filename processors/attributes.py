"""`attributes` processor: the OTel Collector's span-attribute actions, e.g. to delete or hash
prompts and completions before spans leave the host.

    processors:
      attributes/redact:
        include: {match_type: strict, services: [checkout-agent]}   # optional
        exclude: {match_type: regexp, span_names: ["^health"]}      # optional
        actions:
          - {key: gen_ai.input.messages, action: delete}
          - {key: user.email, action: hash}                 # SHA-256, hex
          - {pattern: "^(input|output)\\.value$", action: delete}
          - {key: env, value: prod, action: upsert}

Actions run in order on each span's attributes (resource and event attributes are not
touched), with the OTel Collector's semantics:

    insert   add `key` if absent, from `value`, `from_attribute`, `from_context` or
             `default_value`
    update   change `key` if present
    upsert   insert or update
    delete   remove `key` and/or every key matching `pattern`
    hash     replace the value of `key` / keys matching `pattern` by the SHA-256 hex of
             its bytes (strings as UTF-8; int and double as 8 little-endian bytes; bool
             as one byte). Bytes, arrays and maps become "" (as in the OTel Collector).
    extract  named groups of `pattern` matched on the string value of `key` -> attributes
             (unnamed groups are allowed and ignored)
    convert  `converted_type` int | double | string, left as is when not convertible

`from_context` reads the batch's client info (`pipeline.pdata.ClientInfo`, set by the
receiver): `client.address`; `metadata.<key>` a metadata key (the receiver needs
`include_metadata: true`), several values joined with `;`; a bare key is read as
metadata too, as in the Collector. `auth.<attr>` (an authenticator's data) is never set:
tracesieve has no authenticator extensions, so such an action does nothing unless it has a
`default_value`.

`include` / `exclude` select spans (`include` is checked first): every property given
must match; within `services`, `span_names` and `span_kinds` any item may match;
`attributes` and `resources` must all match; `match_type: regexp` searches anywhere in
the text (Python `re` syntax). Spans are filtered on cheap fields (resource, scope, name,
kind) before their attributes are read; the attributes of a selected span are read once.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import msgspec
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from pipeline.component import ProcessorFactory, Settings, TracesConsumer
from pipeline.configtypes import Config
from pipeline.errors import ConfigError
from pipeline.pdata import ClientInfo, Traces
from pipeline.processorhelper import ProcessorHelper

ActionName = Literal["insert", "update", "upsert", "delete", "hash", "extract", "convert"]
SPAN_KINDS = (
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
)
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


# -- config ---------------------------------------------------------------------------------


class AttributeMatch(Config):
    key: str
    value: Any = None  # absent: the key being present is enough


class LibraryMatch(Config):
    name: str
    version: str | None = None


class RegexpConfig(Config):
    """`regexp` under include/exclude: the Collector's match-result cache. Accepted; no
    effect here (compiled patterns are reused; results are not cached)."""

    cacheenabled: bool = False
    cachemaxnumentries: int = 0


class SeverityNumberMatch(Config):
    min: int | str = 0
    match_undefined: bool = False


class MatchProperties(Config):
    match_type: Literal["strict", "regexp"]
    regexp: RegexpConfig | None = None
    services: list[str] = []
    span_names: list[str] = []
    span_kinds: list[str] = []
    attributes: list[AttributeMatch] = []
    resources: list[AttributeMatch] = []
    libraries: list[LibraryMatch] = []
    # for logs and metrics: accepted where only those pipelines use the processor; in a
    # traces pipeline they are an error, as in the Collector
    log_bodies: list[str] = []
    log_severity_texts: list[str] = []
    log_severity_number: SeverityNumberMatch | None = None
    metric_names: list[str] = []

    other_signals = ("log_bodies", "log_severity_texts", "log_severity_number", "metric_names")

    def for_traces(self) -> list[str]:
        """What makes these properties unusable on spans (the Collector's messages)."""
        return [
            f"{name}: {name} should not be specified for trace spans"
            for name in self.other_signals
            if getattr(self, name)
        ]

    def validate(self) -> list[str]:
        errs: list[str] = []
        if not (
            self.services
            or self.span_names
            or self.span_kinds
            or self.attributes
            or self.resources
            or self.libraries
            or self.log_bodies
            or self.log_severity_texts
            or self.log_severity_number
            or self.metric_names
        ):
            errs.append(
                "at least one of services, span_names, span_kinds, attributes, resources, "
                "libraries must be set"
            )
        patterns = [*self.services, *self.span_names, *self.span_kinds]
        patterns += [lib.name for lib in self.libraries]
        patterns += [lib.version for lib in self.libraries if lib.version is not None]
        for group in (self.attributes, self.resources):
            for a in group:
                if not a.key:
                    errs.append("attributes: empty key")
                if a.value is not None:
                    if self.match_type == "regexp":
                        if not isinstance(a.value, str):
                            errs.append(
                                f"attributes: match_type regexp for {a.key!r} only supports "
                                f"string values, got {type(a.value).__name__}"
                            )
                        else:
                            patterns.append(a.value)
                    elif (problem := _value_problem(a.value)) is not None:
                        errs.append(f"attributes: {a.key!r}: {problem}")
        if self.match_type == "regexp":
            for p in patterns:
                try:
                    re.compile(p)
                except re.error as exc:
                    errs.append(f"invalid regular expression {p!r}: {exc}")
        elif self.span_kinds:
            bad = [k for k in self.span_kinds if k not in SPAN_KINDS]
            if bad:
                errs.append(f"span_kinds: unknown {bad} (valid: {', '.join(SPAN_KINDS)})")
        return errs


class ActionConfig(Config):
    action: ActionName
    key: str = ""
    value: Any = None
    from_attribute: str = ""
    from_context: str = ""
    default_value: Any = None
    pattern: str = ""
    converted_type: Literal["int", "double", "string"] | None = None

    def validate(self) -> list[str]:
        a = self.action
        errs: list[str] = []
        sources = [
            n
            for n, present in (
                ("value", self.value is not None),
                ("from_attribute", bool(self.from_attribute)),
                ("from_context", bool(self.from_context)),
            )
            if present
        ]
        if a in ("delete", "hash"):
            if not self.key and not self.pattern:
                errs.append(f'at least one of "key" and "pattern" is required for {a}')
            if sources or self.default_value is not None:
                errs.append(f"{a} takes no value, from_attribute, from_context or default_value")
        elif not self.key:
            errs.append(f'"key" is required for {a}')
        if a in ("insert", "update", "upsert"):
            if not sources and self.default_value is None:
                errs.append(f"{a} needs one of value, from_attribute, from_context, default_value")
            if len(sources) > 1:
                errs.append(f"{a} takes only one of value, from_attribute, from_context")
            if self.pattern:
                errs.append(f'{a} does not use "pattern"')
            for name, v in (("value", self.value), ("default_value", self.default_value)):
                if v is not None and (problem := _value_problem(v)) is not None:
                    errs.append(f"{name}: {problem}")
        if a == "extract":
            if sources or self.default_value is not None:
                errs.append("extract takes no value, from_attribute, from_context or default_value")
            if not self.pattern:
                errs.append('"pattern" is required for extract')
        if self.pattern:
            try:
                rx = re.compile(self.pattern)
            except re.error as exc:
                errs.append(f"pattern: invalid regular expression {self.pattern!r}: {exc}")
            else:
                if a == "extract" and not rx.groupindex:
                    errs.append("pattern: has no named groups, e.g. (?P<name>...)")
        if a == "convert":
            if self.converted_type is None:
                errs.append('"converted_type" (int, double or string) is required for convert')
            if sources or self.pattern:
                errs.append("convert takes no value, from_attribute or pattern")
        elif self.converted_type is not None:
            errs.append(f'{a} does not use "converted_type"')
        return errs


class AttributesConfig(Config):
    actions: list[ActionConfig] = []
    include: MatchProperties | None = None
    exclude: MatchProperties | None = None

    @classmethod
    def preprocess(cls, raw: Any) -> Any:
        """Action names are case-insensitive, as in the OTel Collector."""
        actions = raw.get("actions") if isinstance(raw, dict) else None
        for a in actions if isinstance(actions, list) else ():
            if isinstance(a, dict) and isinstance(a.get("action"), str):
                a["action"] = a["action"].lower()
        return raw

    def validate(self) -> list[str]:
        return [] if self.actions else ["actions: at least one action is required"]


# -- values -----------------------------------------------------------------------------------


def _value_problem(v: Any, depth: int = 0) -> str | None:
    if depth > 32:
        return "nested too deeply"
    if v is None and depth > 0:
        return None  # an empty value inside a list or map
    if isinstance(v, bool | str | float):
        return None
    if isinstance(v, int):
        return None if INT64_MIN <= v <= INT64_MAX else f"integer {v} does not fit in 64 bits"
    if isinstance(v, list):
        return next((p for x in v if (p := _value_problem(x, depth + 1))), None)
    if isinstance(v, dict):
        return next((p for x in v.values() if (p := _value_problem(x, depth + 1))), None)
    return f"unsupported value type {type(v).__name__}"


def to_any_value(v: Any) -> AnyValue:
    av = AnyValue()
    if isinstance(v, bool):
        av.bool_value = v
    elif isinstance(v, int):
        av.int_value = v
    elif isinstance(v, float):
        av.double_value = v
    elif isinstance(v, str):
        av.string_value = v
    elif isinstance(v, list):
        av.array_value.values.extend(to_any_value(x) for x in v)
    elif isinstance(v, dict):
        av.kvlist_value.values.extend(
            KeyValue(key=str(k), value=to_any_value(x)) for k, x in v.items()
        )
    return av


def _format_double(d: float) -> str:
    """Go's strconv.FormatFloat(d, 'f', -1, 64): shortest, never an exponent."""
    if math.isnan(d):
        return "NaN"
    if math.isinf(d):
        return "+Inf" if d > 0 else "-Inf"
    text = format(Decimal(repr(d)), "f")
    return text[:-2] if text.endswith(".0") else text


def as_string(v: AnyValue) -> str | None:
    """The value as text for regexp matching (str, bool, int, double), else None."""
    which = v.WhichOneof("value")
    if which == "string_value":
        return v.string_value
    if which == "bool_value":
        return "true" if v.bool_value else "false"
    if which == "int_value":
        return str(v.int_value)
    if which == "double_value":
        return _format_double(v.double_value)
    return None


def _to_json(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return [_to_json(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {x.key: _to_json(x.value) for x in v.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    if which is None:
        return None
    return getattr(v, which)


def any_as_string(v: AnyValue) -> str:
    """pcommon.Value.AsString(): bytes as base64, arrays and maps as JSON."""
    s = as_string(v)
    if s is not None:
        return s
    which = v.WhichOneof("value")
    if which == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    if which is None:
        return ""
    return msgspec.json.encode(_to_json(v)).decode()


def sha256_hex(v: AnyValue) -> str:
    which = v.WhichOneof("value")
    if which == "string_value":
        data = v.string_value.encode("utf-8", "surrogatepass")
    elif which == "bool_value":
        data = b"\x01" if v.bool_value else b"\x00"
    elif which == "int_value":
        data = struct.pack("<q", v.int_value)
    elif which == "double_value":
        data = struct.pack("<d", v.double_value)
    else:
        return ""
    return hashlib.sha256(data).hexdigest()


def values_equal(a: AnyValue, b: AnyValue) -> bool:
    wa, wb = a.WhichOneof("value"), b.WhichOneof("value")
    if wa != wb:
        return False
    if wa in ("array_value", "kvlist_value"):
        return bool(_to_json(a) == _to_json(b))
    return wa is None or bool(getattr(a, wa) == getattr(b, wa))


_INT = re.compile(r"[+-]?[0-9]+")


def _convert(v: AnyValue, to: str) -> None:
    which = v.WhichOneof("value")
    if to == "string":
        if which != "string_value":
            v.string_value = any_as_string(v)
    elif to == "int":
        if which == "double_value":
            d = v.double_value
            if math.isfinite(d) and INT64_MIN <= d <= INT64_MAX:
                v.int_value = int(d)
        elif which == "bool_value":
            v.int_value = int(v.bool_value)
        elif which == "string_value":
            s = v.string_value
            if _INT.fullmatch(s) and INT64_MIN <= int(s) <= INT64_MAX:
                v.int_value = int(s)
    elif to == "double":
        if which == "int_value":
            v.double_value = float(v.int_value)
        elif which == "bool_value":
            v.double_value = float(v.bool_value)
        elif which == "string_value":
            s = v.string_value
            if s and not any(c.isspace() or c == "_" for c in s):
                with contextlib.suppress(ValueError):
                    v.double_value = float(s)


# -- matching ---------------------------------------------------------------------------------


class _StringSet:
    """`strict`: equality with any item; `regexp`: any pattern found anywhere."""

    def __init__(self, items: list[str], regexp: bool) -> None:
        self._set = frozenset(items)
        self._rx = re.compile("|".join(f"(?:{p})" for p in items)) if regexp else None
        self._cache: dict[str, bool] = {}

    def __call__(self, text: str) -> bool:
        if self._rx is None:
            return text in self._set
        hit = self._cache.get(text)
        if hit is None:
            if len(self._cache) > 10_000:
                self._cache.clear()
            hit = self._cache[text] = self._rx.search(text) is not None
        return hit


@dataclass(frozen=True)
class _AttrMatcher:
    key: str
    value: AnyValue | None  # strict
    rx: re.Pattern[str] | None  # regexp

    def __call__(self, v: AnyValue | None) -> bool:
        if v is None:
            return False
        if self.rx is not None:
            s = as_string(v)
            return s is not None and self.rx.search(s) is not None
        return self.value is None or values_equal(self.value, v)


def _attr_matchers(items: list[AttributeMatch], regexp: bool) -> list[_AttrMatcher]:
    out = []
    for a in items:
        if a.value is None:
            out.append(_AttrMatcher(a.key, None, None))
        elif regexp:
            out.append(_AttrMatcher(a.key, None, re.compile(a.value)))
        else:
            out.append(_AttrMatcher(a.key, to_any_value(a.value), None))
    return out


def _find(kvs: Any, key: str) -> AnyValue | None:
    for kv in kvs:
        if kv.key == key:
            return kv.value  # type: ignore[no-any-return]
    return None


class _Matcher:
    """One `include` or `exclude` block, evaluated level by level."""

    def __init__(self, mp: MatchProperties) -> None:
        rx = mp.match_type == "regexp"
        self.services = _StringSet(mp.services, rx) if mp.services else None
        self.names = _StringSet(mp.span_names, rx) if mp.span_names else None
        self.kinds = _StringSet(mp.span_kinds, rx) if mp.span_kinds else None
        self.resources = _attr_matchers(mp.resources, rx)
        self.attributes = _attr_matchers(mp.attributes, rx)
        self.attr_keys = frozenset(a.key for a in self.attributes)
        self.libraries = [
            (_StringSet([lib.name], rx), _StringSet([lib.version], rx) if lib.version else None)
            for lib in mp.libraries
        ]

    def resource(self, res: Resource) -> bool:
        if self.services is not None:
            sv = _find(res.attributes, "service.name")
            if not self.services("<nil-service-name>" if sv is None else any_as_string(sv)):
                return False
        if self.resources:
            attrs = res.attributes
            if not len(attrs):
                return False
            return all(m(_find(attrs, m.key)) for m in self.resources)
        return True

    def scope(self, name: str, version: str) -> bool:
        return all(n(name) and (v is None or v(version)) for n, v in self.libraries)

    def span_cheap(self, name: str, kind: int) -> bool:
        if self.names is not None and not self.names(name):
            return False
        if self.kinds is not None:
            k = SPAN_KINDS[kind] if 0 <= kind < len(SPAN_KINDS) else ""
            if not self.kinds(k):
                return False
        return True

    def span_attrs(self, get: Callable[[str], AnyValue | None], n_attrs: int) -> bool:
        if not self.attributes:
            return True
        if n_attrs == 0:
            return False
        return all(m(get(m.key)) for m in self.attributes)


# -- actions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Action:
    name: str
    key: str
    value: AnyValue | None
    from_attribute: str
    default: AnyValue | None
    rx: re.Pattern[str] | None
    converted_type: str | None
    from_context: str = ""


def context_value(client: ClientInfo | None, key: str) -> AnyValue | None:
    """A `from_context` key's value for a batch from this client (None: absent)."""
    if client is None:
        return None
    if key == "client.address":
        values: tuple[str, ...] = (client.addr,) if client.addr else ()
    elif key.startswith("metadata."):
        values = client.get(key[len("metadata.") :])
    elif key.startswith("auth."):
        values = ()  # no authenticator extension sets auth data
    else:
        values = client.get(key)  # a bare key is metadata, as in the Collector
    return AnyValue(string_value=";".join(values)) if values else None


class _SpanAttrs:
    """A span's attributes read once: key -> position, with deletions deferred to the end
    (positions stay valid while actions run)."""

    __slots__ = ("_index", "dead", "keys", "kvs")

    def __init__(self, kvs: Any, keys: list[str]) -> None:
        self.kvs = kvs
        self.keys = keys
        self._index: dict[str, int] | None = None
        self.dead: set[int] = set()

    @property
    def index(self) -> dict[str, int]:
        """Key -> first live position, built on first use."""
        if self._index is None:
            index: dict[str, int] = {}
            for i, k in enumerate(self.keys):
                index.setdefault(k, i)
            self._index = index
        return self._index

    def get(self, key: str) -> AnyValue | None:
        i = self.index.get(key)
        return None if i is None else self.kvs[i].value

    def positions(self, key: str) -> list[int]:
        if key not in self.index:
            return []
        if len(self.index) == len(self.keys) - len(self.dead):
            return [self.index[key]]
        return [i for i, k in enumerate(self.keys) if k == key and i not in self.dead]

    def matching(self, rx: re.Pattern[str]) -> list[int]:
        return [i for i, k in enumerate(self.keys) if i not in self.dead and rx.search(k)]

    def put(self, key: str, value: AnyValue) -> None:
        i = self.index.get(key)
        if i is not None:
            self.kvs[i].value.CopyFrom(value)
            return
        kv = self.kvs.add()
        kv.key = key
        kv.value.CopyFrom(value)
        self.index[key] = len(self.keys)
        self.keys.append(key)

    def delete(self, i: int) -> None:
        self.dead.add(i)
        k = self.keys[i]
        if self.index.get(k) == i:
            del self.index[k]
            nxt = next(
                (
                    j
                    for j in range(i + 1, len(self.keys))
                    if self.keys[j] == k and j not in self.dead
                ),
                None,
            )
            if nxt is not None:
                self.index[k] = nxt

    def finish(self) -> None:
        for i in sorted(self.dead, reverse=True):
            del self.kvs[i]


def _apply(actions: list[_Action], attrs: _SpanAttrs, context: dict[str, AnyValue | None]) -> bool:
    """Run the actions on one span (`context`: the batch's `from_context` values); True
    when something changed."""
    changed = False
    for a in actions:
        name = a.name
        if name == "delete":
            targets = attrs.positions(a.key) if a.key else []
            if a.rx is not None:
                targets = sorted(set(targets) | set(attrs.matching(a.rx)))
            for i in targets:
                attrs.delete(i)
                changed = True
        elif name == "hash":
            targets = attrs.positions(a.key) if a.key else []
            if a.rx is not None:
                targets = sorted(set(targets) | set(attrs.matching(a.rx)))
            for i in targets:
                v = attrs.kvs[i].value
                v.string_value = sha256_hex(v)
                changed = True
        elif name in ("insert", "update", "upsert"):
            present = a.key in attrs.index
            if (name == "insert" and present) or (name == "update" and not present):
                continue
            if a.from_attribute == a.key and a.value is None:
                continue  # a value onto itself
            src = a.value
            if src is None and a.from_attribute:
                src = attrs.get(a.from_attribute)
            if src is None and a.from_context:
                src = context.get(a.from_context)
            if src is None:
                src = a.default
            if src is None:
                continue
            attrs.put(a.key, src)
            changed = True
        elif name == "extract":
            v = attrs.get(a.key)
            if v is None or v.WhichOneof("value") != "string_value" or a.rx is None:
                continue
            m = a.rx.search(v.string_value)
            if m is None:
                continue
            for group in sorted(a.rx.groupindex, key=a.rx.groupindex.__getitem__):
                attrs.put(group, AnyValue(string_value=m.group(group) or ""))
            changed = True
        elif name == "convert":
            v = attrs.get(a.key)
            if v is not None and a.converted_type is not None:
                before = v.SerializeToString()
                _convert(v, a.converted_type)
                changed = changed or v.SerializeToString() != before
    return changed


class AttributesProcessor:
    def __init__(self, cfg: AttributesConfig) -> None:
        self.actions = [
            _Action(
                a.action,
                a.key,
                None if a.value is None else to_any_value(a.value),
                a.from_attribute,
                None if a.default_value is None else to_any_value(a.default_value),
                re.compile(a.pattern) if a.pattern else None,
                a.converted_type,
                a.from_context,
            )
            for a in cfg.actions
        ]
        self._context_keys = sorted({a.from_context for a in self.actions if a.from_context})
        self.include = _Matcher(cfg.include) if cfg.include else None
        self.exclude = _Matcher(cfg.exclude) if cfg.exclude else None
        # When every action is a delete or hash (redaction), each key is handled on its
        # own: which actions touch a key (in order) is worked out once per key name.
        self._redact_only = all(a.name in ("delete", "hash") for a in self.actions)
        self._touched: dict[str, tuple[bool, ...]] = {}  # key -> (is_delete, ...) in order
        self.edits = _edits(self.actions)

    def _actions_on(self, key: str) -> tuple[bool, ...]:
        acts = self._touched.get(key)
        if acts is None:
            if len(self._touched) >= 100_000:
                self._touched.clear()  # keys are normally few; bound it anyway
            acts = tuple(
                a.name == "delete"
                for a in self.actions
                if a.key == key or (a.rx is not None and a.rx.search(key) is not None)
            )
            self._touched[key] = acts
        return acts

    def _redact(self, kvs: Any, keys: list[str]) -> bool:
        """Delete/hash only: one walk over the keys; True when something changed."""
        touched = self._touched
        dead: list[int] = []
        changed = False
        for i, k in enumerate(keys):
            acts = touched.get(k)
            if acts is None:
                acts = self._actions_on(k)
            if not acts:
                continue
            changed = True
            for is_delete in acts:
                if is_delete:
                    dead.append(i)
                    break
                v = kvs[i].value
                v.string_value = sha256_hex(v)
        for i in reversed(dead):
            del kvs[i]
        return changed

    def process(self, traces: Traces) -> Traces:
        inc, exc = self.include, self.exclude
        redact = self._redact_only
        changed = False
        context = {k: context_value(traces.client, k) for k in self._context_keys}
        for rs in traces.request.resource_spans:
            # resource level: rules out (or in) every span of the resource at once
            if inc is not None and not inc.resource(rs.resource):
                continue
            exc_res = exc is not None and exc.resource(rs.resource)
            for ss in rs.scope_spans:
                scope = ss.scope
                if inc is not None and not inc.scope(scope.name, scope.version):
                    continue
                exc_scope = exc_res and exc is not None and exc.scope(scope.name, scope.version)
                for span in ss.spans:
                    # cheap fields first; attributes only for spans still in the running
                    if inc is not None and not inc.span_cheap(span.name, span.kind):
                        continue
                    exc_cheap = (
                        exc_scope and exc is not None and exc.span_cheap(span.name, span.kind)
                    )
                    if exc_cheap and exc is not None and not exc.attributes:
                        continue  # excluded without looking at attributes
                    kvs = span.attributes
                    keys = [kv.key for kv in kvs]  # the one pass over the attributes
                    n = len(keys)
                    attrs = _SpanAttrs(kvs, keys)
                    if inc is not None and inc.attributes and not inc.span_attrs(attrs.get, n):
                        continue
                    if exc_cheap and exc is not None and exc.span_attrs(attrs.get, n):
                        continue
                    if redact:
                        changed = self._redact(kvs, keys) or changed
                    elif _apply(self.actions, attrs, context):
                        attrs.finish()
                        changed = True
        if changed:
            # the batch is re-encoded; trace facts of the keys the actions may change go
            # (those of other keys, and the releases of the traces, stay)
            traces.mutable(self.edits)
        return traces


def _edits(actions: list[_Action]) -> frozenset[str] | None:
    """The attribute keys the actions may change or remove; None when a key pattern
    (delete, hash) makes it any key."""
    keys: set[str] = set()
    for a in actions:
        if a.name == "extract":
            if a.rx is not None:
                keys.update(a.rx.groupindex)  # extract writes its groups, reads `key`
            continue
        if a.rx is not None:
            return None
        keys.add(a.key)
    return frozenset(keys)


def create(
    settings: Settings, cfg: AttributesConfig, next_consumer: TracesConsumer
) -> ProcessorHelper:
    errs = [
        f"{side}::{e}"
        for side, mp in (("include", cfg.include), ("exclude", cfg.exclude))
        if mp is not None
        for e in mp.for_traces()
    ]
    if errs:
        raise ConfigError(errs)
    proc = AttributesProcessor(cfg)
    return ProcessorHelper(settings, next_consumer, proc.process, mutates_data=True)


factory = ProcessorFactory(
    type="attributes",
    config_type=AttributesConfig,
    create=create,
    stability="beta",
    description="insert, update, upsert, delete, hash, extract or convert span attributes",
)
