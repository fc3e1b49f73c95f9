"""The conversation of one LLM call span, read from its content attributes and events, in
every convention tracesieve understands (docs/genai.md#conversation-content).

``read_call(raw, b0, b1) -> CallContent | None``: the call's input messages (system
instructions first), its output messages (one per choice) and the tools it offered, in one
canonical form (OpenAI chat roles, tool calls with JSON-text arguments); None when the span
carries no content in any convention (capture off). Only the span's own bytes are read.
``where`` finds, from the span's structure alone (`wirescan.ranges`: attribute keys and
event names, no value read), the bytes holding each convention's content: what
``has_content`` tells, and what ``read_call`` then reads (only that convention's
attributes; flattened ones grouped by `wirescan.unflatten`). ``read_head`` reads a call's
answer alone, and ``answer_region`` gives the bytes that hold it (for telling, without
reading it, whether a message is that answer).

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

from typing import Any, Final

import msgspec
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pipeline import wirescan, wiresplit
from pipeline.wholetraces import plain
from pipeline.wirescan import FlatRecord
from processors.genai.conversation import CallContent, Head, Message, ToolCall

__all__ = [
    "CallContent",
    "Head",
    "Message",
    "ToolCall",
    "Where",
    "answer_region",
    "has_content",
    "read_call",
    "read_head",
    "read_values",
    "where",
]

# where content is (`where`): attribute key prefixes, then event names; `W_*` index them
_WHERE_ATTRS: Final = (
    b"gen_ai.input.messages",
    b"gen_ai.output.messages",
    b"gen_ai.system_instructions",
    b"llm.input_messages.",
    b"llm.output_messages.",
    b"gen_ai.prompt.",
    b"gen_ai.completion.",
)
_WHERE_EVENTS: Final = (
    b"gen_ai.client.inference.operation.details",
    b"gen_ai.choice",
    b"gen_ai.system.message",
    b"gen_ai.user.message",
    b"gen_ai.assistant.message",
    b"gen_ai.tool.message",
)
W_IN, W_OUT, W_SYS, W_OI_IN, W_OI_OUT, W_TL_IN, W_TL_OUT, W_DETAILS, W_CHOICE = range(9)
_W_EVENTS: Final = range(W_DETAILS, len(_WHERE_ATTRS) + len(_WHERE_EVENTS))
# per `W_*` index, the bytes of the span holding those keys or events, or None
Where = list[tuple[int, int] | None]
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

# flattened attributes by index, as `wirescan.unflatten` groups them: per message index N,
# its fields (`message.role`) and its groups (`message.tool_calls` -> M -> `tool_call.id`)
_Flat = dict[int, FlatRecord]
_OI_PREFIXES: Final = (b"llm.input_messages.", b"llm.output_messages.", b"llm.tools.")
_TL_PREFIXES: Final = (b"gen_ai.prompt.", b"gen_ai.completion.", _FUNCTIONS.encode())


def _unflatten_values(attrs: dict[str, Any], prefixes: tuple[bytes, ...]) -> list[_Flat]:
    """`wirescan.unflatten` of plain values by key (`read_values`)."""
    out: list[_Flat] = [{} for _ in prefixes]
    for k, v in attrs.items():
        kb = k.encode()
        for i, p in enumerate(prefixes):
            if kb.startswith(p):
                wirescan.put_flat(out[i], kb[len(p) :], v)
    return out


def _flat_messages(by_index: _Flat) -> list[Message]:
    """OpenLLMetry `gen_ai.prompt.N.*` / `gen_ai.completion.N.*`, one message per N."""
    out: list[Message] = []
    for i in sorted(by_index):
        f, g = by_index[i]
        r = f.get("role")
        role = (
            r
            if r in _PLAIN_ROLES
            else _role(r) or ("assistant" if "finish_reason" in f else "user")
        )
        v = f.get("content")
        content, bad = (v, "") if type(v) is str and v[:1] != "[" else _content(v)
        calls: list[ToolCall] = []
        tc = g.get("tool_calls") or {}
        for j in sorted(tc):
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


def _from_openllmetry(groups: list[_Flat]) -> CallContent | None:
    prompts, completions, tools = groups
    if not prompts and not completions:
        return None
    defs = [_tool(tools[i][0]) for i in sorted(tools)]
    return CallContent(
        _flat_messages(prompts),
        _flat_messages(completions),
        [d for d in defs if d is not None],
        "openllmetry",
    )


def _oi_message(f: dict[str, Any], g: dict[str, dict[int, dict[str, Any]]]) -> Message | None:
    """An OpenInference message from its `message.*` fields (None: it has none)."""
    r = f.get("message.role")
    if r is None and not any(k[:8] == "message." for k in (*f, *g)):
        return None  # `llm.input_messages.N.<something else>`: not a message
    role = r if r in _PLAIN_ROLES else _role(r)
    v = f.get("message.content")
    content = v if v is None or type(v) is str else _text(v)
    bad = ""
    parts_by = g.get("message.contents")
    if content is None and parts_by:
        parts = []
        for k in sorted(parts_by):
            c = parts_by[k]
            t = str(c.get("message_content.type") or "text")
            parts.append({"type": t, "text": c.get("message_content.text")})
        content, bad = _parts_content(parts)
    calls: list[ToolCall] = []
    tc = g.get("message.tool_calls") or {}
    for j in sorted(tc):
        c = tc[j]
        calls.append(
            ToolCall(
                str(c.get("tool_call.id") or ""),
                str(c.get("tool_call.function.name") or ""),
                _args(c.get("tool_call.function.arguments")),
            )
        )
    return Message(
        role,
        content,
        tuple(calls),
        str(f.get("message.tool_call_id") or ""),
        str(f.get("message.name") or ""),
        bad,
    )


def _oi_messages(by_index: _Flat) -> list[Message]:
    out: list[Message] = []
    for i in sorted(by_index):
        m = _oi_message(*by_index[i])
        if m is not None:
            out.append(m)
    return out


def _from_openinference(groups: list[_Flat]) -> CallContent | None:
    inputs, outputs, tools = groups
    ins = _oi_messages(inputs)
    outs = _oi_messages(outputs)
    if not ins and not outs:
        return None
    defs = [_tool(f.get("tool.json_schema")) for f, _ in (tools[i] for i in sorted(tools))]
    return CallContent(ins, outs, [d for d in defs if d is not None], "openinference")


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
    got = _from_details(events)
    if got is not None:
        return got
    got = _from_openinference(_unflatten_values(attrs, _OI_PREFIXES))
    if got is not None:
        return got
    got = _from_openllmetry(_unflatten_values(attrs, _TL_PREFIXES))
    if got is not None:
        return got
    return _from_old_events(events)


def _from_details(events: list[tuple[str, dict[str, Any]]]) -> CallContent | None:
    for name, ev in events:
        if name == _DETAILS:
            got = _from_otel(ev)
            if got is not None:
                got.convention = "otel_genai_event"
                return got
    return None


_OTEL_SLOTS: Final = wirescan.Slots(
    (
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.tool.definitions",
    )
)


def read_call(raw: bytes, b0: int, b1: int, w: Where | None = None) -> CallContent | None:
    """The content of the span whose body is `raw[b0:b1]` (see the module docstring): the
    conventions tried in `read_values`' order, only those whose keys or events the span
    has (`where`, given as `w` when known), reading only their attributes."""
    if w is None:
        w = where(raw, b0, b1)
    got = None
    # (a repeated key: its last value, as protobuf's merge and `wirescan.collect` have it)
    if w[W_IN] is not None or w[W_OUT] is not None:
        got = _from_otel(dict(wirescan.attributes(raw, b0, b1, _OTEL_SLOTS, None)))
    if got is None and w[W_DETAILS] is not None:
        got = read_values({}, _events(raw, b0, b1))
    if got is None and (w[W_OI_IN] is not None or w[W_OI_OUT] is not None):
        got = _from_openinference(wirescan.unflatten(raw, b0, b1, _OI_PREFIXES, None))
    if got is None and (w[W_TL_IN] is not None or w[W_TL_OUT] is not None):
        got = _from_openllmetry(wirescan.unflatten(raw, b0, b1, _TL_PREFIXES, None))
    if got is None and any(w[i] is not None for i in _W_EVENTS):
        got = _from_old_events(_events(raw, b0, b1))
    if got is None or (not got.input and not got.output):
        return None
    return got


# -- the head of a call: its answer and how long its input is, without reading the input ------


_RAW_LIST: Final = msgspec.json.Decoder(list[msgspec.Raw])
_OLD_INPUT_NAMES: Final = tuple(n.encode() for n, r in _OLD_EVENTS.items() if r)
_OUT_SLOTS: Final = wirescan.Slots(("gen_ai.output.messages",))
_DETAILS_NAME: Final = wirescan.Slots((_DETAILS,))
_HEAD_KEYS: Final = wirescan.Slots(
    ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions")
)


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


def _last_index(prefix: bytes, raw: bytes, r: tuple[int, int] | None) -> int:
    """1 + the index N of the last `prefixN.` in the bytes `r` holding those keys
    (flattened messages are written in order): how many messages there are."""
    if r is None:
        return 0
    at = raw.rfind(prefix, r[0], r[1])
    if at < 0:
        return 0
    at += len(prefix)
    end = at
    while end < r[1] and 48 <= raw[end] <= 57:
        end += 1
    return int(raw[at:end]) + 1 if end > at else 0


def _events_in(raw: bytes, r: tuple[int, int], name: str) -> list[Span.Event]:
    """The span's events named `name` among the fields in the bytes `r`, in order."""
    out = []
    for key, _, v0, v1 in wiresplit.fields(raw, r[0], r[1]):
        if key == _EVENT_FIELD:
            ev = Span.Event.FromString(raw[v0:v1])
            if ev.name == name:
                out.append(ev)
    return out


def _head_events(raw: bytes, b0: int, b1: int, w: Where) -> Head | None:
    """The older event form (or the details event): the choice (or the last details)
    event decoded; the input events only counted."""
    r = w[W_DETAILS]
    if r is not None:
        # the head's keys alone, from the wire (the input is long; it is only counted)
        found = [
            attrs
            for _, name, attrs in wirescan.events(raw, r[0], r[1], _DETAILS_NAME, _HEAD_KEYS)
            if name == _DETAILS
        ]
        return _head_otel(dict(found[-1])) if found else None
    r = w[W_CHOICE]
    choices = _events_in(raw, r, "gen_ai.choice")[:1] if r is not None else []
    if not choices:
        return None
    got = _from_old_events(
        [(ev.name, {kv.key: plain(kv.value) for kv in ev.attributes}) for ev in choices]
    )
    if got is None or not got.output:
        return None
    inputs = sum(raw.count(n, b0, b1) for n in _OLD_INPUT_NAMES)
    return Head(got.output[0], inputs)


def read_head(raw: bytes, b0: int, b1: int, w: Where | None = None) -> Head | None:
    """The call's answer and input length, reading only the answer's attributes (a call's
    input grows with its conversation; the answer does not): the same conventions, in the
    same order, as `read_call`. None: no content, or no answer."""
    if w is None:
        w = where(raw, b0, b1)
    if w[W_OUT] is not None:
        got = dict(wirescan.attributes(raw, b0, b1, _OUT_SLOTS, None))
        if "gen_ai.output.messages" in got:
            return _head_otel(got)
    if w[W_DETAILS] is not None:
        return _head_events(raw, b0, b1, w)
    if w[W_OI_OUT] is not None:
        (oi,) = wirescan.unflatten(raw, b0, b1, (b"llm.output_messages.",), None)
        for i in sorted(oi):
            m = _oi_message(*oi[i])
            if m is not None:
                return Head(m, _last_index(b"llm.input_messages.", raw, w[W_OI_IN]))
    if w[W_TL_OUT] is not None:
        (tl,) = wirescan.unflatten(raw, b0, b1, (b"gen_ai.completion.",), None)
        if tl:
            msgs = _flat_messages({0: tl[min(tl)]})
            return Head(msgs[0], _last_index(b"gen_ai.prompt.", raw, w[W_TL_IN]))
    if w[W_CHOICE] is not None:
        return _head_events(raw, b0, b1, w)
    return None


# -- where a call's content and answer are in its span ------------------------------------------


def where(raw: bytes, b0: int, b1: int) -> Where:
    """Where the span's content is (`wirescan.ranges` of every content key and event, by
    their `W_*` index): found from the span's structure, without reading a value."""
    return wirescan.ranges(raw, b0, b1, _WHERE_ATTRS, _WHERE_EVENTS)


def has_content(raw: bytes, b0: int, b1: int) -> bool:
    """Whether the span has any content key or event."""
    return any(where(raw, b0, b1))


def answer_region(w: Where) -> tuple[int, int] | None:
    """The bytes of the span (from `where`) that hold its answer and nothing of its input,
    in the convention `read_head` reads: the `gen_ai.output.messages` attribute, the
    `llm.output_messages.*` or `gen_ai.completion.*` attributes, or the `gen_ai.choice`
    events. None: none (the details event holds both)."""
    if w[W_OUT] is not None:
        return w[W_OUT]
    if w[W_DETAILS] is not None:
        return None
    return w[W_OI_OUT] or w[W_TL_OUT] or w[W_CHOICE]
