"""A subset of the OpenTelemetry Transformation Language (OTTL): boolean conditions over a
span, a span event or a resource, as the OTel Collector's routing connector and tail
sampling `ottl_condition` policy write them, evaluated on the encoded spans.

    attributes["http.route"] == "/checkout" and not (kind == SPAN_KIND_CLIENT)
    resource.attributes["service.name"] != nil or status.code == STATUS_CODE_ERROR
    end_time_unix_nano - start_time_unix_nano > 5000000000
    end_time - start_time >= Duration("1.5s") and IsMatch(name, "^llm\\.")
    route() where attributes["X-Tenant"] == "acme"          (a statement: `statement`)

The subset:

- values: string ("..." with \\" \\\\ \\n \\t \\r escapes), int, float, bool, `nil`, bytes
  (`0x...`), the enums `SPAN_KIND_*` and `STATUS_CODE_*` (ints), paths, `Duration("...")`,
  and `+ - * /` between numbers (or times and durations, as OTTL does);
- comparisons `== != < <= > >=` with OTTL's rules: values of different types are never
  equal and never ordered; `nil` equals only `nil`; booleans are only (un)equal;
- `and`, `or`, `not`, parentheses; `IsMatch(target, "regex")` (a search, as Go's
  MatchString; a number or boolean target is matched in its string form, `nil` never);
- paths, by context (a path may carry its context's name: `span.name`, `resource.attributes`):
    resource   `attributes[...]`
    span       `attributes[...]`, `name`, `kind`, `status.code`, `start_time_unix_nano`,
               `end_time_unix_nano`, `start_time`, `end_time`, `trace_id.string`,
               `span_id.string`, `parent_span_id.string`,
               `instrumentation_scope.name` (or `scope.name`), `resource.attributes[...]`
    spanevent  `attributes[...]`, `name`, `time_unix_nano`, `time`, and every span path
               above as `span.<path>`, `resource.attributes[...]`
  with `[key]` / `[index]` to reach into maps and lists.

Anything else (another function, an editor other than `route()`, a path the context has
not) is refused at parse time, naming it: `OTTLError`. Evaluation errors (arithmetic on
a string, division by zero) raise `OTTLEvalError`; what that means is the caller's
`error_mode`.

Evaluation reads only what the condition names: span attributes through
`pipeline.wirescan.attributes` with the keys the conditions use (`Context.span_keys`),
the resource's attributes decoded once per resource.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

from pipeline import wirescan
from pipeline.configtypes import Duration
from pipeline.otlpwire import SPAN_KINDS, STATUS_CODES
from pipeline.wirescan import SpanInfo

__all__ = [
    "CONTEXTS",
    "Condition",
    "EventInfo",
    "OTTLError",
    "OTTLEvalError",
    "SpanData",
    "compare",
    "events",
    "parse_condition",
    "parse_statement",
]

ContextName = Literal["resource", "span", "spanevent"]
CONTEXTS: Final = ("resource", "span", "spanevent")

ENUMS: Final = {**SPAN_KINDS, **STATUS_CODES}
CONVERTERS: Final = ("IsMatch", "Duration")


class OTTLError(ValueError):
    """A condition outside the subset, or not OTTL at all; the message says where."""


class OTTLEvalError(ValueError):
    """A condition that cannot be evaluated on this data (e.g. arithmetic on a string)."""


# -- times and durations (OTTL's time.Time and time.Duration) ----------------------------


class Time:
    __slots__ = ("ns",)

    def __init__(self, ns: int) -> None:
        self.ns = ns

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Time) and other.ns == self.ns

    def __hash__(self) -> int:
        return hash(("time", self.ns))

    def __repr__(self) -> str:
        return f"Time({self.ns})"


class Dur:
    __slots__ = ("ns",)

    def __init__(self, ns: int) -> None:
        self.ns = ns

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Dur) and other.ns == self.ns

    def __hash__(self) -> int:
        return hash(("duration", self.ns))

    def __repr__(self) -> str:
        return f"Dur({self.ns})"


# -- the data a condition reads -------------------------------------------------------------


@dataclass(frozen=True)
class EventInfo:
    """A span event on the wire: its name, time and where its body is in the encoding."""

    name: str
    time_unix_nano: int
    body_start: int
    body_end: int


class SpanData:
    """One span (and optionally one of its events) as conditions read it: `raw` is the
    encoding `span` (a `wirescan.SpanInfo`) points into; `resource` the resource's
    attributes as plain values. Attributes are read once, only the keys in `keys`."""

    __slots__ = ("_attrs", "_event_attrs", "event", "keys", "raw", "resource", "span")

    def __init__(
        self,
        raw: bytes,
        span: SpanInfo | None,
        resource: dict[str, Any],
        keys: frozenset[str] | None,
        event: EventInfo | None = None,
    ) -> None:
        self.raw = raw
        self.span = span
        self.resource = resource
        self.keys = keys
        self.event = event
        self._attrs: dict[str, Any] | None = None
        self._event_attrs: dict[str, Any] | None = None

    def attrs(self) -> dict[str, Any]:
        got = self._attrs
        if got is None:
            got = {}
            s = self.span
            if s is not None:
                for k, v in wirescan.attributes(self.raw, s[9], s[10], self.keys, None):
                    got.setdefault(k, v)  # the first of a repeated key, as pdata's Get
            self._attrs = got
        return got

    def event_attrs(self) -> dict[str, Any]:
        got = self._event_attrs
        if got is None:
            got = {}
            ev = self.event
            if ev is not None:
                for k, v in _event_attributes(self.raw, ev.body_start, ev.body_end):
                    got.setdefault(k, v)
            self._event_attrs = got
        return got


def events(raw: bytes, span: SpanInfo) -> list[EventInfo]:
    """The events of a span (Span.events = 11), read from the encoding."""
    out: list[EventInfo] = []
    for key, _, v0, v1 in wirescan._fields(raw, span[9], span[10]):
        if key != 0x5A:  # events = 11, LEN
            continue
        name = ""
        t = 0
        for k, _, e0, e1 in wirescan._fields(raw, v0, v1):
            if k == 0x09:  # time_unix_nano = 1, fixed64
                t = int.from_bytes(raw[e0 : e0 + 8], "little")
            elif k == 0x12:  # name = 2
                name = wirescan._str(raw, e0, e1)
        out.append(EventInfo(name, t, v0, v1))
    return out


def _event_attributes(raw: bytes, start: int, end: int) -> list[tuple[str, Any]]:
    return [
        wirescan._py_kv(raw, v0, v1, None, 0)
        for k, _, v0, v1 in wirescan._fields(raw, start, end)
        if k == 0x1A  # Event.attributes = 3
    ]


# -- comparisons and arithmetic, with OTTL's rules ----------------------------------------------


def _kind(v: Any) -> str:
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, bytes):
        return "bytes"
    if isinstance(v, Time):
        return "time"
    if isinstance(v, Dur):
        return "duration"
    if isinstance(v, dict):
        return "map"
    if isinstance(v, list):
        return "slice"
    return "other"


def compare(a: Any, b: Any, op: str) -> bool:
    """`a op b` as OTTL compares: different types are unequal and unordered, `nil` equals
    only `nil`, booleans, maps and slices are only (un)equal."""
    ka, kb = _kind(a), _kind(b)
    if ka != kb:
        return op == "!="
    if op == "==":
        return bool(a == b) if ka not in ("time", "duration") else a.ns == b.ns
    if op == "!=":
        return not (bool(a == b) if ka not in ("time", "duration") else a.ns == b.ns)
    if ka in ("nil", "bool", "map", "slice", "other"):
        return False
    if ka in ("time", "duration"):
        a, b = a.ns, b.ns
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    if op == ">":
        return bool(a > b)
    return bool(a >= b)


def _arith(a: Any, b: Any, op: str) -> Any:
    ka, kb = _kind(a), _kind(b)
    if ka == "number" and kb == "number":
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if b == 0:
            raise OTTLEvalError("division by zero")
        if isinstance(a, int) and isinstance(b, int):
            q = abs(a) // abs(b)  # Go's integer division truncates toward zero
            return q if (a >= 0) == (b >= 0) else -q
        return a / b
    if op == "-" and ka == "time" and kb == "time":
        return Dur(a.ns - b.ns)
    if ka == "time" and kb == "duration" and op in "+-":
        return Time(a.ns + b.ns if op == "+" else a.ns - b.ns)
    if ka == "duration" and kb == "duration" and op in "+-":
        return Dur(a.ns + b.ns if op == "+" else a.ns - b.ns)
    raise OTTLEvalError(f"cannot apply {op!r} to {ka} and {kb}")


def _as_text(v: Any) -> str | None:
    """The string form IsMatch matches a number or boolean in (Go's formatting)."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if v != int(v) or abs(v) >= 1e21 else str(int(v))
    return None


# -- lexer ------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<bytes>0x[0-9A-Fa-f]+)
  | (?P<float>[-+]?(?:\d+\.\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?\d+[eE][-+]?\d+)
  | (?P<int>[-+]?\d+)
  | (?P<op>==|!=|<=|>=|<|>|\+|-|\*|/|\(|\)|\[|\]|,|\.|\{|\}|:)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)
_ESCAPES: Final = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r"}
_KEYWORDS: Final = ("and", "or", "not", "true", "false", "nil", "where")


@dataclass(frozen=True)
class Tok:
    kind: str  # string bytes float int op ident end
    text: str
    col: int  # 1-based


def _unquote(text: str, col: int) -> str:
    out: list[str] = []
    i = 1
    while i < len(text) - 1:
        c = text[i]
        if c == "\\":
            nxt = text[i + 1]
            if nxt not in _ESCAPES:
                raise OTTLError(f"invalid escape \\{nxt} in a string at column {col + i}")
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _lex(text: str) -> list[Tok]:
    toks: list[Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            bad = text[pos]
            hint = " (strings take double quotes)" if bad == "'" else ""
            raise OTTLError(f"unexpected character {bad!r} at column {pos + 1}{hint}")
        kind = m.lastgroup or ""
        tok = m.group(0)
        if kind in ("int", "float") and tok[0] in "+-" and toks and _ends_value(toks[-1]):
            # `a -1`: a minus between two values, not a negative literal
            toks.append(Tok("op", tok[0], pos + 1))
            pos += 1
            continue
        if kind != "ws":
            toks.append(Tok(kind, tok, pos + 1))
        pos = m.end()
    toks.append(Tok("end", "", len(text) + 1))
    return toks


def _ends_value(t: Tok) -> bool:
    if t.kind in ("string", "bytes", "float", "int"):
        return True
    if t.kind == "ident":
        return t.text not in ("and", "or", "not", "where")
    return t.text in (")", "]")


# -- AST ------------------------------------------------------------------------------

Eval = Callable[[SpanData], Any]
_NOT_CONST: Final = object()


@dataclass
class Node:
    """A compiled expression: `fn` evaluates it; `boolean` says it is a condition (a
    comparison, a logical operation, a boolean literal or a boolean converter)."""

    fn: Eval
    boolean: bool
    text: str  # for messages
    is_path: bool = False
    logic: bool = False  # a comparison or and/or/not: a condition, never a value
    kind: str | None = None  # the value's kind (see `_kind`) when known before evaluation
    const: Any = _NOT_CONST  # the value, for a literal
    span_index: int | None = None  # a span field read straight from the SpanInfo tuple


# the kind of each span and event field (for comparisons compiled to plain operators)
_FIELD_KINDS: Final = {
    "name": "string",
    "kind": "number",
    "status.code": "number",
    "start_time_unix_nano": "number",
    "end_time_unix_nano": "number",
    "time_unix_nano": "number",
    "start_time": "time",
    "end_time": "time",
    "time": "time",
    "trace_id.string": "string",
    "span_id.string": "string",
    "parent_span_id.string": "string",
    "instrumentation_scope.name": "string",
    "scope.name": "string",
}
_SPAN_INDEX: Final = {
    "name": 1,
    "kind": 2,
    "status.code": 8,
    "start_time_unix_nano": 6,
    "end_time_unix_nano": 7,
    "instrumentation_scope.name": 0,
    "scope.name": 0,
}
_SPAN_FIELDS: Final[dict[str, Callable[[SpanInfo], Any]]] = {
    "name": lambda s: s[1],
    "kind": lambda s: s[2],
    "status.code": lambda s: s[8],
    "start_time_unix_nano": lambda s: s[6],
    "end_time_unix_nano": lambda s: s[7],
    "start_time": lambda s: Time(s[6]),
    "end_time": lambda s: Time(s[7]),
    "trace_id.string": lambda s: s[3].hex(),
    "span_id.string": lambda s: s[4][len(s[3]) :].hex(),
    "parent_span_id.string": lambda s: s[5][len(s[3]) :].hex() if s[5] else "",
    "instrumentation_scope.name": lambda s: s[0],
    "scope.name": lambda s: s[0],
}
_EVENT_FIELDS: Final[dict[str, Callable[[EventInfo], Any]]] = {
    "name": lambda e: e.name,
    "time_unix_nano": lambda e: e.time_unix_nano,
    "time": lambda e: Time(e.time_unix_nano),
}


def _supported_paths(context: ContextName) -> str:
    if context == "resource":
        return 'attributes["..."], resource.attributes["..."]'
    span = ['attributes["..."]', *_SPAN_FIELDS, 'resource.attributes["..."]']
    if context == "span":
        return ", ".join(span)
    event = ['attributes["..."]', *_EVENT_FIELDS, *(f"span.{p}" for p in span[:-1])]
    return ", ".join([*event, 'resource.attributes["..."]'])


class _Parser:
    def __init__(self, text: str, context: ContextName) -> None:
        self.text = text
        self.context = context
        self.toks = _lex(text)
        self.i = 0
        self.span_keys: set[str] = set()
        self.all_span_keys = False
        self.event_keys: set[str] = set()
        self.resource_keys: set[str] = set()

    # -- token helpers
    @property
    def tok(self) -> Tok:
        return self.toks[self.i]

    def next(self) -> Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def at(self, text: str) -> bool:
        t = self.tok
        return t.text == text and t.kind in ("op", "ident")

    def expect(self, text: str, what: str) -> Tok:
        if not self.at(text):
            raise self.error(f"expected {text!r} {what}")
        return self.next()

    def error(self, msg: str, tok: Tok | None = None) -> OTTLError:
        t = tok or self.tok
        found = "the end" if t.kind == "end" else repr(t.text)
        return OTTLError(f"{msg} at column {t.col} (found {found})")

    # -- grammar
    def parse_condition(self) -> Node:
        node = self.or_expr()
        if self.tok.kind != "end":
            raise self.error("unexpected text after the condition")
        if not node.boolean:
            raise OTTLError(
                f"{node.text} is not a condition: compare it (e.g. {node.text} == true)"
            )
        return node

    def or_expr(self) -> Node:
        node = self.and_expr()
        while self.at("or"):
            op = self.next()
            right = self.and_expr()
            node = _logical("or", self._bool(node, op), self._bool(right, op))
        return node

    def and_expr(self) -> Node:
        node = self.not_expr()
        while self.at("and"):
            op = self.next()
            right = self.not_expr()
            node = _logical("and", self._bool(node, op), self._bool(right, op))
        return node

    def not_expr(self) -> Node:
        if self.at("not"):
            op = self.next()
            inner = self._bool(self.not_expr(), op)
            f = inner.fn
            return Node(lambda d: not f(d), True, f"not {inner.text}", logic=True)
        return self.comparison()

    def _bool(self, node: Node, op: Tok) -> Node:
        if not node.boolean:
            raise OTTLError(
                f"{op.text!r} at column {op.col} needs conditions on both sides; "
                f"{node.text} is a value (compare it, e.g. {node.text} == true)"
            )
        return node

    def comparison(self) -> Node:
        left = self.sum()
        t = self.tok
        if t.kind == "op" and t.text in ("==", "!=", "<", "<=", ">", ">="):
            self.next()
            right = self.sum()
            if self.tok.kind == "op" and self.tok.text in ("==", "!=", "<", "<=", ">", ">="):
                raise self.error("comparisons cannot be chained; join them with and/or")
            for side in (left, right):
                if side.logic:
                    raise OTTLError(
                        f"cannot compare the condition {side.text} (column {t.col}); "
                        "use and/or/not to combine conditions"
                    )
            return Node(
                _comparison(left, right, t.text),
                True,
                f"{left.text} {t.text} {right.text}",
                logic=True,
            )
        return left

    def sum(self) -> Node:
        node = self.product()
        while self.tok.kind == "op" and self.tok.text in ("+", "-"):
            op = self.next()
            node = self._math(node, op, self.product())
        return node

    def product(self) -> Node:
        node = self.atom()
        while self.tok.kind == "op" and self.tok.text in ("*", "/"):
            op = self.next()
            node = self._math(node, op, self.atom())
        return node

    def _math(self, left: Node, op: Tok, right: Node) -> Node:
        for side in (left, right):
            if side.boolean:
                raise OTTLError(f"{op.text!r} at column {op.col} needs values, not {side.text}")
        lf, rf, o = left.fn, right.fn, op.text
        text = f"{left.text} {o} {right.text}"
        if left.kind == right.kind == "number" and o in "+-*":
            fn: Eval = {
                "+": lambda d: lf(d) + rf(d),
                "-": lambda d: lf(d) - rf(d),
                "*": lambda d: lf(d) * rf(d),
            }[o]
            return Node(fn, False, text, kind="number")
        kind = None
        if o == "-" and left.kind == right.kind == "time":
            kind = "duration"
        return Node(lambda d: _arith(lf(d), rf(d), o), False, text, kind=kind)

    def atom(self) -> Node:
        t = self.tok
        if t.kind == "op" and t.text == "(":
            self.next()
            inner = self.or_expr()
            self.expect(")", "to close the parenthesis")
            return Node(inner.fn, inner.boolean, f"({inner.text})", logic=inner.logic)
        if t.kind == "string":
            self.next()
            s = _unquote(t.text, t.col)
            return Node(lambda d: s, False, t.text, kind="string", const=s)
        if t.kind == "int":
            self.next()
            n = int(t.text)
            return Node(lambda d: n, False, t.text, kind="number", const=n)
        if t.kind == "float":
            self.next()
            x = float(t.text)
            return Node(lambda d: x, False, t.text, kind="number", const=x)
        if t.kind == "bytes":
            self.next()
            digits = t.text[2:]
            if len(digits) % 2:
                raise self.error("a bytes literal needs an even number of hex digits", t)
            b = bytes.fromhex(digits)
            return Node(lambda d: b, False, t.text, kind="bytes", const=b)
        if t.kind == "op" and t.text in ("[", "{"):
            raise self.error("list and map literals are outside the supported OTTL subset")
        if t.kind != "ident":
            raise self.error("expected a value")
        name = t.text
        if name in ("true", "false"):
            self.next()
            v = name == "true"
            return Node(lambda d: v, True, name, kind="bool", const=v)
        if name == "nil":
            self.next()
            return Node(lambda d: None, False, name, kind="nil", const=None)
        if name in ("and", "or", "not", "where"):
            raise self.error("expected a value")
        if self.toks[self.i + 1].text == "(":
            return self.call()
        if name.isupper() or (name[0].isupper() and "_" in name):
            self.next()
            if name not in ENUMS:
                known = ", ".join(ENUMS)
                raise OTTLError(f"unknown enum {name} at column {t.col} (the subset knows {known})")
            n = ENUMS[name]
            return Node(lambda d: n, False, name, kind="number", const=n)
        return self.path()

    def call(self) -> Node:
        t = self.next()
        name = t.text
        if name not in CONVERTERS:
            kind = "editor" if name[0].islower() else "converter"
            raise OTTLError(
                f"unsupported function {name}() at column {t.col}: the OTTL subset has the "
                f"converters {', '.join(CONVERTERS)}"
                + (
                    "; a statement may only be route() where <condition>"
                    if kind == "editor"
                    else ""
                )
            )
        self.expect("(", "after the function name")
        args: list[Node] = []
        if not self.at(")"):
            args.append(self.or_expr())
            while self.at(","):
                self.next()
                args.append(self.or_expr())
        self.expect(")", f"to close {name}(")
        if name == "Duration":
            if len(args) != 1 or not args[0].text.startswith('"'):
                raise OTTLError(
                    f'Duration() at column {t.col} takes one string, e.g. Duration("5s")'
                )
            text = args[0].fn(SpanData(b"", None, {}, None))
            try:
                ns = round(Duration.parse(text).seconds * 1e9)
            except ValueError as exc:
                raise OTTLError(f"Duration() at column {t.col}: {exc}") from None
            dur = Dur(ns)
            return Node(lambda d: dur, False, f"Duration({args[0].text})", kind="duration")
        # IsMatch(target, pattern)
        if len(args) != 2:
            raise OTTLError(f"IsMatch() at column {t.col} takes a target and a pattern")
        target, pattern = args
        if not pattern.text.startswith('"'):
            raise OTTLError(f"IsMatch() at column {t.col}: the pattern must be a string literal")
        if target.boolean:
            raise OTTLError(f"IsMatch() at column {t.col}: the target must be a value")
        source = pattern.fn(SpanData(b"", None, {}, None))
        try:
            rx = re.compile(source)
        except re.error as exc:
            raise OTTLError(
                f"IsMatch() at column {t.col}: invalid regular expression {source!r}: {exc}"
            ) from None
        tf = target.fn

        def is_match(d: SpanData) -> bool:
            s = _as_text(tf(d))
            return s is not None and rx.search(s) is not None

        return Node(is_match, True, f"IsMatch({target.text}, {pattern.text})")

    def path(self) -> Node:
        start = self.tok
        parts = [self.next().text]
        while self.at("."):
            self.next()
            if self.tok.kind != "ident":
                raise self.error("expected a name after '.'")
            parts.append(self.next().text)
        keys: list[tuple[str | int, str]] = []  # (key, as written)
        while self.at("["):
            self.next()
            k = self.tok
            if k.kind == "string":
                keys.append((_unquote(k.text, k.col), k.text))
            elif k.kind == "int":
                keys.append((int(k.text), k.text))
            else:
                raise self.error("a key in [...] must be a string or an int literal")
            self.next()
            self.expect("]", "to close '['")
        dotted = ".".join(parts)
        text = dotted + "".join(f"[{shown}]" for _, shown in keys)
        fn = self._resolve(dotted, keys, start)
        field = dotted.split(".", 1)[1] if dotted.startswith(("span.", "spanevent.")) else dotted
        kind = _FIELD_KINDS.get(field) if not keys else None
        rest = [k for k, _ in keys[1:]]  # the first key picked the attribute
        if rest:
            base = fn

            def index(d: SpanData) -> Any:
                v = base(d)
                for k in rest:
                    if isinstance(v, dict) and isinstance(k, str):
                        v = v.get(k)
                    elif isinstance(v, list) and isinstance(k, int):
                        if not -len(v) <= k < len(v):
                            raise OTTLEvalError(f"index {k} out of range in {text}")
                        v = v[k]
                    else:
                        return None
                return v

            fn = index
        span_at = (
            _SPAN_INDEX.get(field) if not keys and not dotted.startswith("spanevent") else None
        )
        if self.context == "spanevent" and not dotted.startswith("span."):
            span_at = None  # an unprefixed name is the event's
        return Node(fn, False, text, is_path=True, kind=kind, span_index=span_at)

    def _resolve(self, dotted: str, keys: list[tuple[str | int, str]], start: Tok) -> Eval:
        ctx = self.context
        rest = dotted
        # a path may name its context: span.name, resource.attributes, spanevent.name
        scope: str = ctx
        for prefix in ("resource", "spanevent", "span"):
            if rest == prefix or rest.startswith(prefix + "."):
                scope, rest = prefix, rest[len(prefix) + 1 :]
                break

        def bad() -> OTTLError:
            return OTTLError(
                f"unsupported path {dotted}"
                + ("[...]" if keys else "")
                + f" at column {start.col} in the {ctx} context "
                f"(the subset supports {_supported_paths(ctx)})"
            )

        allowed = {
            "resource": ("resource",),
            "span": ("span", "resource"),
            "spanevent": ("spanevent", "span", "resource"),
        }[ctx]
        if scope not in allowed:
            raise bad()
        if rest == "attributes":
            key = keys[0][0] if keys else None
            if not isinstance(key, str):
                raise OTTLError(
                    f'{dotted} at column {start.col} needs a key: {dotted}["name"] '
                    "(the whole map is outside the subset)"
                )
            if scope == "resource":
                self.resource_keys.add(key)
                return lambda d: d.resource.get(key)
            if scope == "span":
                self.span_keys.add(key)
                return lambda d: d.attrs().get(key)
            self.event_keys.add(key)
            return lambda d: d.event_attrs().get(key)
        if keys:
            raise bad()
        if scope == "span" and rest in _SPAN_FIELDS:
            # span paths are only read where there is a span (span, spanevent contexts)
            if rest in _SPAN_INDEX:
                i = _SPAN_INDEX[rest]
                return lambda d: d.span[i]  # type: ignore[index]
            get = _SPAN_FIELDS[rest]
            return lambda d: get(d.span)  # type: ignore[arg-type]
        if scope == "spanevent" and rest in _EVENT_FIELDS:
            eget = _EVENT_FIELDS[rest]

            def event_field(d: SpanData) -> Any:
                e = d.event
                return eget(e) if e is not None else None

            return event_field
        raise bad()


_PY_OPS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}
_NUMBER_TYPES: Final = (int, float)
_SWAPPED: Final = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_FIELD_VS_CONST: Final[dict[str, Callable[[int, Any], Eval]]] = {
    "==": lambda i, c: lambda d: d.span[i] == c,  # type: ignore[index]
    "!=": lambda i, c: lambda d: d.span[i] != c,  # type: ignore[index]
    "<": lambda i, c: lambda d: d.span[i] < c,  # type: ignore[index]
    "<=": lambda i, c: lambda d: d.span[i] <= c,  # type: ignore[index]
    ">": lambda i, c: lambda d: d.span[i] > c,  # type: ignore[index]
    ">=": lambda i, c: lambda d: d.span[i] >= c,  # type: ignore[index]
}
_TWO_VALUES: Final[dict[str, Callable[[Eval, Eval], Eval]]] = {
    "==": lambda lf, rf: lambda d: lf(d) == rf(d),
    "!=": lambda lf, rf: lambda d: lf(d) != rf(d),
    "<": lambda lf, rf: lambda d: lf(d) < rf(d),
    "<=": lambda lf, rf: lambda d: lf(d) <= rf(d),
    ">": lambda lf, rf: lambda d: lf(d) > rf(d),
    ">=": lambda lf, rf: lambda d: lf(d) >= rf(d),
}


def _comparison(left: Node, right: Node, op: str) -> Eval:
    """`compare` compiled for what is known before evaluation: two values of one known
    kind compare with Python's operator; a literal on one side checks the other's type
    once; otherwise the general rules."""
    lf, rf = left.fn, right.fn
    lk, rk = left.kind, right.kind
    if lk is not None and rk is not None and lk == rk and lk in ("string", "number"):
        for path, lit, swapped in ((left, right, False), (right, left, True)):
            if path.span_index is not None and lit.const is not _NOT_CONST:
                # a span field against a literal: one tuple read and one operator
                return _FIELD_VS_CONST[_SWAPPED[op] if swapped else op](path.span_index, lit.const)
        return _TWO_VALUES[op](lf, rf)
    if lk is not None and rk is not None and lk != rk:
        result = op == "!="  # different kinds: never equal, never ordered
        return lambda d: result
    for const_side, other in ((right, lf), (left, rf)):
        fn = _against_literal(const_side, other, op, const_side is left)
        if fn is not None:
            return fn
    return lambda d: compare(lf(d), rf(d), op)


def _against_literal(literal: Node, other: Eval, op: str, swap: bool) -> Eval | None:
    """A comparison with a literal on one side (`swap`: on the left), or None."""
    c = literal.const
    if c is _NOT_CONST:
        return None
    pyop = _PY_OPS[op]
    kind = literal.kind
    if kind == "nil" and op in ("==", "!="):
        want = op == "=="
        return lambda d: (other(d) is None) is want
    if kind == "bool" and op in ("==", "!="):
        want = op == "=="
        return lambda d: (other(d) is c) is want
    if kind == "string":
        types: tuple[type, ...] = (str,)
    elif kind == "number":
        types = _NUMBER_TYPES
    else:
        return None
    if op == "==":
        return lambda d: type(v := other(d)) in types and v == c
    if op == "!=":
        return lambda d: not (type(v := other(d)) in types and v == c)
    if swap:
        return lambda d: type(v := other(d)) in types and pyop(c, v)
    return lambda d: type(v := other(d)) in types and pyop(v, c)


def _logical(op: str, left: Node, right: Node) -> Node:
    lf, rf = left.fn, right.fn
    if op == "and":
        return Node(
            lambda d: bool(lf(d)) and bool(rf(d)), True, f"{left.text} and {right.text}", logic=True
        )
    return Node(
        lambda d: bool(lf(d)) or bool(rf(d)), True, f"{left.text} or {right.text}", logic=True
    )


# -- compiled conditions ------------------------------------------------------------------


class Condition:
    """A parsed condition. `matches(data)` evaluates it (`OTTLEvalError` if it cannot);
    `fn` is the bare evaluation (a hot loop calls it, and `matches` on an exception to
    have it reported); `span_keys`/`event_keys`/`resource_keys` are the attribute keys it
    reads."""

    __slots__ = ("_fn", "context", "event_keys", "fn", "resource_keys", "span_keys", "text")

    def __init__(self, text: str, context: ContextName, node: Node, parser: _Parser) -> None:
        self.text = text
        self.context = context
        self._fn = self.fn = node.fn
        self.span_keys = frozenset(parser.span_keys)
        self.event_keys = frozenset(parser.event_keys)
        self.resource_keys = frozenset(parser.resource_keys)

    def matches(self, data: SpanData) -> bool:
        try:
            return bool(self._fn(data))
        except OTTLEvalError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:  # pragma: no cover - a gap
            raise OTTLEvalError(f"{self.text}: {exc}") from None

    def __repr__(self) -> str:
        return f"Condition({self.context}: {self.text})"


def _check_context(context: str) -> ContextName:
    if context not in CONTEXTS:
        raise OTTLError(f"unsupported context {context!r}: want one of {', '.join(CONTEXTS)}")
    return context  # type: ignore[return-value]


def parse_condition(text: str, context: str = "span") -> Condition:
    """A boolean condition in `context` (resource, span or spanevent)."""
    ctx = _check_context(context)
    if not text.strip():
        raise OTTLError("the condition is empty")
    p = _Parser(text, ctx)
    return Condition(text, ctx, p.parse_condition(), p)


def parse_statement(
    text: str, context: str = "span", editors: Iterable[str] = ("route",)
) -> Condition:
    """A statement `<editor>() [where <condition>]` whose editor is one of `editors` (the
    routing connector's `route`), as the condition that decides whether it applies."""
    ctx = _check_context(context)
    p = _Parser(text, ctx)
    t = p.tok
    allowed = tuple(editors)
    if t.kind != "ident" or p.toks[1].text != "(":
        raise OTTLError(
            f"a statement starts with a function call, e.g. {allowed[0]}() where <condition> "
            f"(found {t.text!r} at column {t.col})"
        )
    if t.text not in allowed:
        raise OTTLError(
            f"unsupported function {t.text}() at column {t.col}: a statement here may only be "
            + " or ".join(f"{e}()" for e in allowed)
            + " [where <condition>]"
        )
    p.next()
    p.expect("(", "after the function name")
    if not p.at(")"):
        raise p.error(f"{t.text}() takes no arguments")
    p.next()
    if p.tok.kind == "end":
        node = Node(lambda d: True, True, "true")
        return Condition(text, ctx, node, p)
    p.expect("where", "or the end of the statement")
    node = p.or_expr()
    if p.tok.kind != "end":
        raise p.error("unexpected text after the condition")
    if not node.boolean:
        raise OTTLError(f"{node.text} is not a condition: compare it (e.g. {node.text} == true)")
    return Condition(text, ctx, node, p)


def infer_context(text: str) -> ContextName:
    """The context a statement or condition names through its paths' prefixes (the
    Collector's context inference): `span` if any path starts with `span.`, `spanevent`
    with `spanevent.`, else `resource` (the routing connector's default)."""
    try:
        toks = _lex(text)
    except OTTLError:
        return "resource"
    names = {
        t.text
        for i, t in enumerate(toks)
        if t.kind == "ident" and toks[i + 1].text == "." and (i == 0 or toks[i - 1].text != ".")
    }
    if "spanevent" in names:
        return "spanevent"
    if "span" in names:
        return "span"
    return "resource"
