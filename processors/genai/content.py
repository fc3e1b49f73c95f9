"""The conversation of one LLM call span, read from its content attributes and events, in
every convention tracesieve understands (docs/genai.md#conversation-content).

``read_call(raw, b0, b1) -> CallContent | None``: the call's input messages (system
instructions first), its output messages (one per choice) and the tools it offered, in one
canonical form (OpenAI chat roles, tool calls with JSON-text arguments); None when the span
carries no content in any convention (capture off). Only the span's own bytes are read.
``has_content`` tells cheaply whether a span has any (substring searches, then one regular
expression); ``read_head`` reads a call's answer alone, and ``answer_region`` finds the
bytes that hold it (for telling, without reading it, whether a message is that answer).

Conventions, the first that gives messages wins (a span double-instrumented carries the
same conversation twice):

1. OTel GenAI, current: `gen_ai.system_instructions`, `gen_ai.input.messages`,
   `gen_ai.output.messages`, `gen_ai.tool.definitions` (JSON strings or structured values),
   message parts `text`, `tool_call`, `tool_call_response` (`response` or `result`);
2. the same keys on a `gen_ai.client.inference.operation.details` span event;
3. OpenInference: `llm.input_messages.N.message.*`, `llm.output_messages.N.message.*`,
   `llm.tools.N.tool.json_schema`;
4. OpenLLMetry (and LiteLLM's legacy spans): `gen_ai.prompt.N.*`, `gen_ai.completion.N.*`
   (`tool_calls.M.*`, `function_call.*`), `llm.request.functions.N.*`;
5. the older event form: span events `gen_ai.system.message`, `gen_ai.user.message`,
   `gen_ai.assistant.message`, `gen_ai.tool.message` and `gen_ai.choice`, their body in
   attributes (`gen_ai.event.content` as JSON, or `content`, `role`, `tool_calls`, `id`,
   `message`, `index`).

A part that cannot be put in a text example (an image, audio, a file) leaves its type in
`Message.unsupported`: the example holding it is invalid (`unsupported_content`), never
written without it. Reasoning parts are left out (they are not what the model is trained
to say).
"""

from __future__ import annotations

import re
from typing import Any, Final

import msgspec
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pipeline import wirescan, wiresplit
from pipeline.wholetraces import plain
from processors.genai.conversation import CallContent, Head, Message, ToolCall

__all__ = [
    "CONTENT_MARKERS",
    "CallContent",
    "Head",
    "Message",
    "ToolCall",
    "answer_region",
    "has_content",
    "may_have_content",
    "read_call",
    "read_head",
    "read_values",
]

# any content key or event name, as it appears in a span's bytes
CONTENT_MARKERS: Final = re.compile(
    rb"gen_ai\.(?:input\.messages|output\.messages|system_instructions|prompt\.|completion\."
    rb"|system\.message|user\.message|assistant\.message|tool\.message|choice"
    rb"|client\.inference\.operation\.details)|llm\.(?:input|output)_messages\."
)


def may_have_content(raw: bytes, b0: int, b1: int) -> bool:
    """False when the span's bytes cannot hold a content key or event name: every marker
    holds one of a few substrings (searched for as such, much faster than the expression)."""
    return not (
        raw.find(b"message", b0, b1) < 0
        and raw.find(b"gen_ai.prompt.", b0, b1) < 0
        and raw.find(b"gen_ai.completion.", b0, b1) < 0
        and raw.find(b"gen_ai.choice", b0, b1) < 0
        and raw.find(b"gen_ai.system_instructions", b0, b1) < 0
    )


def has_content(raw: bytes, b0: int, b1: int) -> bool:
    """Whether the span's bytes hold any content key or event name."""
    return may_have_content(raw, b0, b1) and CONTENT_MARKERS.search(raw, b0, b1) is not None


_EVENTS_MARKER: Final = re.compile(
    rb"gen_ai\.(?:system\.message|user\.message|assistant\.message|tool\.message|choice"
    rb"|client\.inference\.operation\.details)"
)
_EVENT_FIELD: Final = 0x5A  # Span.events = 11, LEN
_OLD_EVENTS: Final = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
    "gen_ai.choice": "",
}
_DETAILS: Final = "gen_ai.client.inference.operation.details"
_ROLES: Final = {"system", "developer", "user", "assistant", "tool", "function", "model"}
_PLAIN_ROLES: Final = frozenset(("system", "developer", "user", "assistant", "tool"))
_SKIPPED_PARTS: Final = {"reasoning", "thinking", "redacted_thinking"}
_FUNCTIONS: Final = "llm.request.functions."
_decode: Final = msgspec.json.Decoder().decode
_encode: Final = msgspec.json.Encoder().encode


# -- values -------------------------------------------------------------------------------------


def _json(v: Any) -> Any:
    """A value that may be JSON text: parsed when it is (objects and arrays only)."""
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    if isinstance(v, str):
        s = v.lstrip()
        if s[:1] in ("[", "{"):
            try:
                return _decode(v)
            except msgspec.DecodeError:
                return v
    return v


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return _encode(v).decode()


def _args(v: Any) -> str:
    """Tool call arguments as JSON text: text as captured, a structured value serialised."""
    if v is None:
        return "{}"
    if isinstance(v, str):
        return v
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return _encode(v).decode()


def _content(v: Any) -> tuple[str | None, str]:
    """A message's content: text as it is (JSON text included: a tool's result often is),
    a list of content parts (or JSON text holding one) as the text of its text parts."""
    if isinstance(v, str) and v.lstrip()[:1] == "[":
        parsed = _json(v)
        if (
            isinstance(parsed, list)
            and parsed
            and all(isinstance(p, dict) and "type" in p for p in parsed)
        ):
            v = parsed
    if isinstance(v, list):
        return _parts_content(v)
    if isinstance(v, dict) and "type" in v:
        return _parts_content([v])
    return _text(v), ""


def _role(v: Any) -> str:
    r = str(v or "").strip().lower()
    return "assistant" if r in ("model", "ai") else r


def _parts_content(parts: list[Any]) -> tuple[str | None, str]:
    """(text of the text parts, the first unsupported part's type) of a content-parts list
    (OpenAI `[{type: text, text}]`, OTel `[{type: text, content}]`)."""
    texts: list[str] = []
    bad = ""
    for p in parts:
        if isinstance(p, str):
            texts.append(p)
            continue
        if not isinstance(p, dict):
            continue
        t = str(p.get("type") or "text")
        if t in ("text", "input_text", "output_text"):
            got = p.get("text", p.get("content"))
            if got is not None:
                texts.append(_text(got) or "")
        elif t in _SKIPPED_PARTS:
            continue
        elif not bad:
            bad = t
    return ("".join(texts) if texts else None), bad


def _tool(d: Any) -> dict[str, Any] | None:
    """A tool definition in OpenAI's shape, from OpenAI's nested or the OTel flat shape."""
    d = _json(d)
    if not isinstance(d, dict):
        return None
    fn = d.get("function")
    src = fn if isinstance(fn, dict) else d
    name = src.get("name")
    if not isinstance(name, str) or not name:
        return None
    out: dict[str, Any] = {"name": name}
    desc = src.get("description")
    if isinstance(desc, str) and desc:
        out["description"] = desc
    params = _json(src.get("parameters", src.get("input_schema")))
    if isinstance(params, dict):
        out["parameters"] = params
    if isinstance(src.get("strict"), bool):
        out["strict"] = src["strict"]
    return {"type": "function", "function": out}


# -- OTel GenAI, current ------------------------------------------------------------------------


def _otel_messages(value: Any) -> list[Message]:
    """`gen_ai.input.messages` / `gen_ai.output.messages` (parts format)."""
    value = _json(value)
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return []
    out: list[Message] = []
    for m in value:
        if type(m) is not dict:
            m = _json(m)
            if not isinstance(m, dict):
                continue
        role = _role(m.get("role"))
        parts = m.get("parts")
        if type(parts) is not list:
            parts = _json(parts)
        name = str(m.get("name") or "")
        if not isinstance(parts, list):  # not the parts format: OpenAI-like
            out.extend(_openai_message(m, role))
            continue
        texts: list[str] = []
        calls: list[ToolCall] = []
        responses: list[Message] = []
        bad = ""
        for p in parts:
            if type(p) is not dict:
                p = _json(p)
                if not isinstance(p, dict):
                    continue
            t = str(p.get("type") or "")
            if t == "text":
                texts.append(_text(p.get("content", p.get("text"))) or "")
            elif t == "tool_call":
                calls.append(
                    ToolCall(
                        str(p.get("id") or ""), str(p.get("name") or ""), _args(p.get("arguments"))
                    )
                )
            elif t == "tool_call_response":
                resp = p["response"] if "response" in p else p.get("result")
                responses.append(
                    Message("tool", _text(resp) or "", tool_call_id=str(p.get("id") or ""))
                )
            elif t in _SKIPPED_PARTS:
                continue
            elif not bad:
                bad = t or "unknown"
        if responses and not texts and not calls:
            out.extend(responses)  # one tool message per answered call
            continue
        content = "".join(texts) if texts else None
        out.append(Message(role, content, tuple(calls), name=name, unsupported=bad))
        out.extend(responses)
    return out


def _system_instructions(value: Any) -> list[Message]:
    value = _json(value)
    if value is None:
        return []
    if isinstance(value, str):
        return [Message("system", value)]
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return []
    content, bad = _parts_content([_json(p) for p in value])
    return [Message("system", content or "", unsupported=bad)]


def _tools(value: Any) -> list[dict[str, Any]]:
    value = _json(value)
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return []
    return [t for t in (_tool(v) for v in value) if t is not None]


def _from_otel(attrs: dict[str, Any]) -> CallContent | None:
    inp = attrs.get("gen_ai.input.messages")
    outp = attrs.get("gen_ai.output.messages")
    if inp is None and outp is None:
        return None
    system = _system_instructions(attrs.get("gen_ai.system_instructions"))
    return CallContent(
        system + _otel_messages(inp),
        _otel_messages(outp),
        _tools(attrs.get("gen_ai.tool.definitions")),
        "otel_genai",
    )


# -- OpenAI-like message objects (old events, some gateways) ----------------------------------


def _openai_calls(v: Any) -> tuple[ToolCall, ...]:
    v = _json(v)
    if isinstance(v, dict):
        v = [v]
    if not isinstance(v, list):
        return ()
    out: list[ToolCall] = []
    for c in v:
        c = _json(c)
        if not isinstance(c, dict):
            continue
        got = c.get("function")
        fn: dict[str, Any] = got if isinstance(got, dict) else c
        out.append(
            ToolCall(str(c.get("id") or ""), str(fn.get("name") or ""), _args(fn.get("arguments")))
        )
    return tuple(out)


def _openai_message(m: dict[str, Any], role: str = "") -> list[Message]:
    role = role or _role(m.get("role"))
    content, bad = _content(m.get("content"))
    calls = _openai_calls(m.get("tool_calls"))
    fc = _json(m.get("function_call"))
    if not calls and isinstance(fc, dict) and fc.get("name"):
        calls = (ToolCall("", str(fc["name"]), _args(fc.get("arguments"))),)
    tcid = str(m.get("tool_call_id") or m.get("id") or "") if role == "tool" else ""
    return [Message(role, content, calls, tcid, str(m.get("name") or ""), bad)]


# -- flattened conventions ----------------------------------------------------------------------


# a flattened message: its plain fields, its tool calls and its content parts by index
_Flat = tuple[dict[str, Any], dict[int, dict[str, Any]], dict[int, dict[str, Any]]]


def _put(side: dict[str, _Flat], n: str, field: str, v: Any) -> None:
    rec = side.get(n)
    if rec is None:
        rec = side[n] = ({}, {}, {})
    if field[:11] == "tool_calls." or field[:9] == "contents.":
        group, m, rest = field.split(".", 2) if field.count(".") >= 2 else (field, "", "")
        if m.isdigit() and rest:
            by = rec[1] if group == "tool_calls" else rec[2]
            got = by.get(int(m))
            if got is None:
                got = by[int(m)] = {}
            got[rest] = v
            return
    rec[0][field] = v


def _indexed(side: dict[str, _Flat]) -> dict[int, _Flat]:
    return {int(n): rec for n, rec in side.items() if n.isdigit()}


def _groups(attrs: dict[str, Any], prefix: str, sub: str = "") -> dict[int, _Flat]:
    """Flattened keys `<prefix>N.<sub><field>` as {N: (fields, tool calls, parts)}, with
    `tool_calls.M.<x>` and `contents.K.<x>` fields grouped by M and K."""
    out: dict[str, _Flat] = {}
    lp = len(prefix)
    ls = len(sub)
    for k, v in attrs.items():
        if not k.startswith(prefix):
            continue
        dot = k.find(".", lp)
        if dot < 0 or (ls and not k.startswith(sub, dot + 1)):
            continue
        _put(out, k[lp:dot], k[dot + 1 + ls :], v)
    return _indexed(out)


def _openinference_groups(
    attrs: dict[str, Any],
) -> tuple[dict[int, _Flat], dict[int, _Flat], dict[int, Any]]:
    """OpenInference's input messages, output messages and tools in one pass (a key split
    once: `llm.<kind>.<N>.<message|tool>.<field>`)."""
    ins: dict[str, _Flat] = {}
    outs: dict[str, _Flat] = {}
    tools: dict[int, Any] = {}
    for k, v in attrs.items():
        if k[:4] != "llm.":
            continue
        p = k.split(".", 4)
        if len(p) < 5:
            continue
        kind = p[1]
        if kind == "input_messages":
            side = ins
        elif kind == "output_messages":
            side = outs
        else:
            if kind == "tools" and p[3] == "tool" and p[4] == "json_schema" and p[2].isdigit():
                tools[int(p[2])] = v
            continue
        if p[3] == "message":
            _put(side, p[2], p[4], v)
    return _indexed(ins), _indexed(outs), tools


def _openllmetry_groups(
    attrs: dict[str, Any],
) -> tuple[dict[int, _Flat], dict[int, _Flat], dict[int, _Flat]]:
    """OpenLLMetry's prompts, completions and functions in one pass."""
    prompts: dict[str, _Flat] = {}
    completions: dict[str, _Flat] = {}
    functions: dict[str, _Flat] = {}
    for k, v in attrs.items():
        c = k[:7]
        if c == "gen_ai.":
            p = k.split(".", 3)
            if len(p) < 4:
                continue
            if p[1] == "prompt":
                _put(prompts, p[2], p[3], v)
            elif p[1] == "completion":
                _put(completions, p[2], p[3], v)
        elif c == "llm.req" and k.startswith(_FUNCTIONS):
            p = k.split(".", 4)
            if len(p) == 5:
                _put(functions, p[3], p[4], v)
    return _indexed(prompts), _indexed(completions), _indexed(functions)


def _flat_messages(by_index: dict[int, _Flat]) -> list[Message]:
    """OpenLLMetry `gen_ai.prompt.N.*` / `gen_ai.completion.N.*`, one message per N."""
    out: list[Message] = []
    for i in sorted(by_index):
        f, tc, _ = by_index[i]
        r = f.get("role")
        role = (
            r
            if r in _PLAIN_ROLES
            else _role(r) or ("assistant" if "finish_reason" in f else "user")
        )
        v = f.get("content")
        content, bad = (v, "") if type(v) is str and v[:1] != "[" else _content(v)
        calls: list[ToolCall] = []
        for j in sorted(tc) if tc else ():
            c = tc[j]
            calls.append(
                ToolCall(
                    str(c.get("id") or ""), str(c.get("name") or ""), _args(c.get("arguments"))
                )
            )
        if not calls and f.get("function_call.name"):
            calls.append(
                ToolCall("", str(f["function_call.name"]), _args(f.get("function_call.arguments")))
            )
        tcid = str(f.get("tool_call_id") or "")
        out.append(Message(role, content, tuple(calls), tcid, str(f.get("name") or ""), bad))
    return out


def _from_openllmetry(attrs: dict[str, Any]) -> CallContent | None:
    prompts, completions, tools = _openllmetry_groups(attrs)
    if not prompts and not completions:
        return None
    defs = [_tool(tools[i][0]) for i in sorted(tools)]
    return CallContent(
        _flat_messages(prompts),
        _flat_messages(completions),
        [d for d in defs if d is not None],
        "openllmetry",
    )


def _oi_messages(by_index: dict[int, _Flat]) -> list[Message]:
    out: list[Message] = []
    for i in sorted(by_index):
        f, tc, parts_by = by_index[i]
        r = f.get("role")
        role = r if r in _PLAIN_ROLES else _role(r)
        v = f.get("content")
        content = v if v is None or type(v) is str else _text(v)
        bad = ""
        if content is None and parts_by:
            parts = []
            for k in sorted(parts_by):
                c = parts_by[k]
                t = str(c.get("message_content.type") or "text")
                parts.append({"type": t, "text": c.get("message_content.text")})
            content, bad = _parts_content(parts)
        calls: list[ToolCall] = []
        for j in sorted(tc) if tc else ():
            c = tc[j]
            calls.append(
                ToolCall(
                    str(c.get("tool_call.id") or ""),
                    str(c.get("tool_call.function.name") or ""),
                    _args(c.get("tool_call.function.arguments")),
                )
            )
        out.append(
            Message(
                role,
                content,
                tuple(calls),
                str(f.get("tool_call_id") or ""),
                str(f.get("name") or ""),
                bad,
            )
        )
    return out


def _from_openinference(attrs: dict[str, Any]) -> CallContent | None:
    inputs, outputs, tools = _openinference_groups(attrs)
    if not inputs and not outputs:
        return None
    defs = [_tool(tools[i]) for i in sorted(tools)]
    return CallContent(
        _oi_messages(inputs),
        _oi_messages(outputs),
        [d for d in defs if d is not None],
        "openinference",
    )


# -- span events ------------------------------------------------------------------------------


def _events(raw: bytes, b0: int, b1: int) -> list[tuple[str, dict[str, Any]]]:
    """(name, attributes) of the span's events, in order."""
    out: list[tuple[str, dict[str, Any]]] = []
    for key, _, v0, v1 in wiresplit.fields(raw, b0, b1):
        if key != _EVENT_FIELD:
            continue
        ev = Span.Event.FromString(raw[v0:v1])
        if ev.name in _OLD_EVENTS or ev.name == _DETAILS:
            attrs: dict[str, Any] = {}
            for kv in ev.attributes:
                attrs.setdefault(kv.key, plain(kv.value))
            out.append((ev.name, attrs))
    return out


def _event_body(attrs: dict[str, Any]) -> dict[str, Any]:
    body = _json(attrs.get("gen_ai.event.content", attrs.get("event.body", attrs.get("body"))))
    if isinstance(body, dict):
        return body
    return attrs


def _from_old_events(events: list[tuple[str, dict[str, Any]]]) -> CallContent | None:
    inp: list[Message] = []
    choices: list[tuple[int, Message]] = []
    for name, attrs in events:
        role = _OLD_EVENTS.get(name)
        if role is None:
            continue
        body = _event_body(attrs)
        if role:
            inp.extend(_openai_message(body, role))
            continue
        msg = _json(body.get("message"))
        if not isinstance(msg, dict):
            msg = {k: v for k, v in body.items() if k in ("content", "tool_calls", "role")}
        idx = body.get("index", 0)
        for m in _openai_message(msg, "assistant"):
            choices.append((idx if isinstance(idx, int) else 0, m))
    if not inp and not choices:
        return None
    choices.sort(key=lambda c: c[0])
    return CallContent(inp, [m for _, m in choices], [], "otel_genai_events")


# -- the call ---------------------------------------------------------------------------------


def read_values(
    attrs: dict[str, Any], events: list[tuple[str, dict[str, Any]]]
) -> CallContent | None:
    """A call's content from its attributes (plain values by key) and its GenAI events."""
    got = _from_otel(attrs)
    if got is not None:
        return got
    for name, ev in events:
        if name == _DETAILS:
            got = _from_otel(ev)
            if got is not None:
                got.convention = "otel_genai_event"
                return got
    got = _from_openinference(attrs)
    if got is not None:
        return got
    got = _from_openllmetry(attrs)
    if got is not None:
        return got
    return _from_old_events(events)


def read_call(raw: bytes, b0: int, b1: int) -> CallContent | None:
    """The content of the span whose body is `raw[b0:b1]` (see the module docstring): the
    conventions tried in `read_values`' order, those whose keys the span's bytes lack
    skipped."""
    # (a repeated key: its last value, as protobuf's merge and `wirescan.collect` have it)
    attrs: dict[str, Any] = dict(wirescan.attributes(raw, b0, b1, None, None))
    got = _from_otel(attrs)
    if got is None and raw.find(_DETAILS_B, b0, b1) >= 0:
        got = read_values({}, _events(raw, b0, b1))
    if got is None and (
        raw.find(b"llm.input_messages.", b0, b1) >= 0
        or raw.find(b"llm.output_messages.", b0, b1) >= 0
    ):
        got = _from_openinference(attrs)
    if got is None and (
        raw.find(b"gen_ai.prompt.", b0, b1) >= 0 or raw.find(b"gen_ai.completion.", b0, b1) >= 0
    ):
        got = _from_openllmetry(attrs)
    if got is None and _EVENTS_MARKER.search(raw, b0, b1) is not None:
        got = _from_old_events(_events(raw, b0, b1))
    if got is None or (not got.input and not got.output):
        return None
    return got


# -- the head of a call: its answer and how long its input is, without reading the input ------


_OTEL_KEYS: Final = frozenset(
    ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions")
)
_RAW_LIST: Final = msgspec.json.Decoder(list[msgspec.Raw])
_MAX_CALLS: Final = 64  # tool calls of one output message read by `read_head`
_OI_OUT: Final = "llm.output_messages.0.message."
_OI_OUT_KEYS: Final = frozenset(
    [_OI_OUT + f for f in ("role", "content", "name", "tool_call_id")]
    + [
        f"{_OI_OUT}tool_calls.{j}.tool_call.{f}"
        for j in range(_MAX_CALLS)
        for f in ("id", "function.name", "function.arguments")
    ]
    + [f"{_OI_OUT}contents.{k}.message_content.{f}" for k in range(16) for f in ("type", "text")]
)
_TL_OUT: Final = "gen_ai.completion.0."
_TL_OUT_KEYS: Final = frozenset(
    [_TL_OUT + f for f in ("role", "content", "finish_reason", "tool_call_id", "name")]
    + [_TL_OUT + f"function_call.{f}" for f in ("name", "arguments")]
    + [
        f"{_TL_OUT}tool_calls.{j}.{f}"
        for j in range(_MAX_CALLS)
        for f in ("id", "name", "arguments")
    ]
)
_OLD_INPUT_NAMES: Final = tuple(n.encode() for n, r in _OLD_EVENTS.items() if r)
_CHOICE: Final = b"gen_ai.choice"
_DETAILS_B: Final = _DETAILS.encode()


def _count(v: Any) -> int:
    """The number of messages in a JSON array text (or a structured array)."""
    if isinstance(v, list):
        return len(v)
    if isinstance(v, str):
        try:
            return len(_RAW_LIST.decode(v))
        except msgspec.DecodeError:
            return 0
    return 0


def _head_otel(got: dict[str, Any]) -> Head | None:
    out = _otel_messages(got.get("gen_ai.output.messages"))
    if not out:
        return None
    n = _count(got["gen_ai.input.messages"]) if "gen_ai.input.messages" in got else 0
    if n and got.get("gen_ai.system_instructions"):
        n += 1
    return Head(out[0], n)


def _last_index(prefix: bytes, raw: bytes, b0: int, b1: int) -> int:
    """1 + the index N of the last `prefixN.` in the span (flattened messages are written
    in order): how many messages there are."""
    at = raw.rfind(prefix, b0, b1)
    if at < 0:
        return 0
    at += len(prefix)
    end = at
    while end < b1 and 48 <= raw[end] <= 57:
        end += 1
    return int(raw[at:end]) + 1 if end > at else 0


def _event_at(raw: bytes, name_at: int, b0: int, b1: int) -> bytes | None:
    """The encoded Event whose name starts at `name_at`: its name field comes first, or
    after its 9-byte time field; the Event field's tag and length just before."""
    for tag_at in (name_at - 2, name_at - 11):  # the name field's tag; (a short name)
        for start in range(max(b0, tag_at - 6), tag_at - 1):
            if raw[start] != _EVENT_FIELD:
                continue
            n, shift, pos = 0, 0, start + 1
            while pos < tag_at and shift < 35:
                byte = raw[pos]
                n |= (byte & 0x7F) << shift
                pos += 1
                shift += 7
                if not byte & 0x80:
                    break
            if pos == tag_at and pos + n <= b1:
                return raw[pos : pos + n]
    return None


def _head_events(raw: bytes, b0: int, b1: int) -> Head | None:
    """The older event form (or the details event): the choice (or details) event found by
    its name and decoded; the input events only counted."""
    at = raw.rfind(_DETAILS_B, b0, b1)
    if at >= 0:
        data = _event_at(raw, at, b0, b1)
        if data is None:
            return None
        ev = Span.Event.FromString(data)
        return _head_otel({kv.key: plain(kv.value) for kv in ev.attributes})
    choices: list[tuple[str, dict[str, Any]]] = []
    at = raw.find(_CHOICE, b0, b1)
    while at >= 0 and not choices:  # the first choice event (index 0 in order)
        data = _event_at(raw, at, b0, b1)
        if data is not None:
            ev = Span.Event.FromString(data)
            if ev.name == "gen_ai.choice":
                choices.append((ev.name, {kv.key: plain(kv.value) for kv in ev.attributes}))
        at = raw.find(_CHOICE, at + 1, b1)
    if not choices:
        return None
    got = _from_old_events(choices)
    if got is None or not got.output:
        return None
    inputs = sum(raw.count(n, b0, b1) for n in _OLD_INPUT_NAMES)
    return Head(got.output[0], inputs)


_HEAD_KEYS: Final = frozenset(("gen_ai.output.messages",)) | _OI_OUT_KEYS | _TL_OUT_KEYS
_HEAD_SLOTS: Final = wirescan.Slots(_HEAD_KEYS)


def read_head(raw: bytes, b0: int, b1: int) -> Head | None:
    """The call's answer and input length, reading only the answer's attributes (a call's
    input grows with its conversation; the answer does not): the same conventions, in the
    same order, as `read_call`. None: no content, or no answer."""
    got = dict(wirescan.attributes(raw, b0, b1, _HEAD_SLOTS, None))
    if "gen_ai.output.messages" in got:
        return _head_otel(got)
    if raw.find(_DETAILS_B, b0, b1) >= 0:
        return _head_events(raw, b0, b1)
    oi = _groups(got, "llm.output_messages.", "message.")
    if oi:
        msgs = _oi_messages({0: oi[min(oi)]})
        return Head(msgs[0], _last_index(b"llm.input_messages.", raw, b0, b1)) if msgs else None
    tl = _groups(got, "gen_ai.completion.")
    if tl:
        msgs = _flat_messages({0: tl[min(tl)]})
        return Head(msgs[0], _last_index(b"gen_ai.prompt.", raw, b0, b1)) if msgs else None
    if raw.find(_CHOICE, b0, b1) >= 0:
        return _head_events(raw, b0, b1)
    return None


# -- where a call's answer is in its span ---------------------------------------------------------


def _varint(raw: bytes, pos: int, end: int) -> tuple[int, int]:
    n = shift = 0
    while pos < end and shift < 64:
        b = raw[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, pos
        shift += 7
    return -1, pos


def _value_end(raw: bytes, key_at: int, b1: int) -> int:
    """The end of the value of the attribute whose key's bytes start at `key_at` (-1: not
    an attribute key there)."""
    if key_at < 2:
        return -1
    n = raw[key_at - 1]
    if n >= 0x80 or raw[key_at - 2] != 0x0A:  # a short key, in its KeyValue's field 1
        return -1
    p = key_at + n
    if p >= b1 or raw[p] != 0x12:  # the value, field 2
        return -1
    size, q = _varint(raw, p + 1, b1)
    return q + size if size >= 0 and q + size <= b1 else -1


_OUT_KEY: Final = b"gen_ai.output.messages"


_ANSWERS: Final = (_OUT_KEY, b"llm.output_messages.", b"gen_ai.completion.", _CHOICE)
_answer_first = [0]  # the form found last: calls of a trace share their instrumentation


def answer_region(raw: bytes, b0: int, b1: int) -> tuple[int, int] | None:
    """The bytes of the span that hold its answer and nothing of its input: the value of
    `gen_ai.output.messages`, the `llm.output_messages.*` or `gen_ai.completion.*`
    attributes, or the `gen_ai.choice` events. None: not found so (the details event
    holds both)."""
    first = _answer_first[0]
    for i in (first, *(j for j in range(len(_ANSWERS)) if j != first)):
        got = _region(raw, b0, b1, i)
        if got is not None:
            _answer_first[0] = i
            return got
    return None


def _region(raw: bytes, b0: int, b1: int, form: int) -> tuple[int, int] | None:
    marker = _ANSWERS[form]
    at = raw.find(marker, b0, b1)
    if at < 0:
        return None
    if form == 0:
        while at >= 0:
            end = _value_end(raw, at, b1)
            if end > 0:
                return at, end
            at = raw.find(marker, at + 1, b1)
        return None
    if form == 3:  # the events come after the attributes, the input events before
        return (at, b1) if raw.find(_DETAILS_B, b0, b1) < 0 else None
    last = raw.rfind(marker, at, b1)
    end = _value_end(raw, last, b1)
    return (at, end) if end > 0 else None
