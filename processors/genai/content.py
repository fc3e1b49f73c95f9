"""The conversation of one LLM call span, read from its content attributes and events, in
every convention tracesieve understands (docs/genai.md#conversation-content).

``read_call(raw, b0, b1) -> CallContent | None``: the call's input messages (system
instructions first), its output messages (one per choice) and the tools it offered, in one
canonical form (OpenAI chat roles, tool calls with JSON-text arguments); None when the span
carries no content in any convention (capture off). Only the span's own bytes are read; a
span without any content key in its bytes costs one regular-expression search.

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

import json
import re
from typing import Any, Final

import msgspec
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pipeline import wirescan, wiresplit
from pipeline.wholetraces import plain

__all__ = [
    "CONTENT_MARKERS",
    "CallContent",
    "Message",
    "ToolCall",
    "read_call",
    "read_values",
]

# any content key or event name, as it appears in a span's bytes
CONTENT_MARKERS: Final = re.compile(
    rb"gen_ai\.(?:input\.messages|output\.messages|system_instructions|prompt\.|completion\."
    rb"|system\.message|user\.message|assistant\.message|tool\.message|choice"
    rb"|client\.inference\.operation\.details)|llm\.(?:input|output)_messages\."
)
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
_SKIPPED_PARTS: Final = {"reasoning", "thinking", "redacted_thinking"}
_FLAT: Final = re.compile(r"^(gen_ai\.prompt|gen_ai\.completion)\.(\d+)\.(.+)$")
_OI: Final = re.compile(r"^llm\.(input|output)_messages\.(\d+)\.message\.(.+)$")
_INDEXED: Final = re.compile(r"^(.+?)\.(\d+)\.(.+)$")
_FUNCTIONS: Final = "llm.request.functions."


class ToolCall(msgspec.Struct, frozen=True):
    id: str
    name: str
    arguments: str  # JSON text, as captured (a structured value: serialised)


class Message(msgspec.Struct, frozen=True):
    role: str  # system, developer, user, assistant, tool (others: invalid examples)
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""
    name: str = ""
    unsupported: str = ""  # the type of a part that cannot be in a text example


class CallContent(msgspec.Struct):
    input: list[Message]
    output: list[Message]  # one per choice
    tools: list[dict[str, Any]]  # {"type": "function", "function": {name, ...}}
    convention: str


# -- values -------------------------------------------------------------------------------------


def _json(v: Any) -> Any:
    """A value that may be JSON text: parsed when it is (objects and arrays only)."""
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    if isinstance(v, str):
        s = v.lstrip()
        if s[:1] in ("[", "{"):
            try:
                return json.loads(v)
            except ValueError:
                return v
    return v


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return json.dumps(v, ensure_ascii=False)


def _args(v: Any) -> str:
    """Tool call arguments as JSON text: text as captured, a structured value serialised."""
    if v is None:
        return "{}"
    if isinstance(v, str):
        return v
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return json.dumps(v, ensure_ascii=False)


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
        m = _json(m)
        if not isinstance(m, dict):
            continue
        role = _role(m.get("role"))
        parts = _json(m.get("parts"))
        name = str(m.get("name") or "")
        if not isinstance(parts, list):  # not the parts format: OpenAI-like
            out.extend(_openai_message(m, role))
            continue
        texts: list[str] = []
        calls: list[ToolCall] = []
        responses: list[Message] = []
        bad = ""
        for p in parts:
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


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """`a.0.b` keys as nested dicts (`{"a": {0: {"b": ...}}}`) one level at a time, by the
    caller: here, `tool_calls.M.x` -> {"tool_calls": {M: {"x": v}}}."""
    out: dict[str, Any] = {}
    for k, v in flat.items():
        m = _INDEXED.match(k)
        if m is not None and m.group(1) in (
            "tool_calls",
            "contents",
        ):
            group = out.setdefault(m.group(1), {})
            if isinstance(group, dict):
                group.setdefault(int(m.group(2)), {})[m.group(3)] = v
        else:
            out[k] = v
    return out


def _flat_messages(by_index: dict[int, dict[str, Any]]) -> list[Message]:
    """OpenLLMetry `gen_ai.prompt.N.*` / `gen_ai.completion.N.*`, one message per N."""
    out: list[Message] = []
    for i in sorted(by_index):
        f = _nest(by_index[i])
        role = _role(f.get("role")) or ("assistant" if "finish_reason" in f else "user")
        content, bad = _content(f.get("content"))
        calls: list[ToolCall] = []
        for j in sorted(f.get("tool_calls", {})):
            c = f["tool_calls"][j]
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
    groups: dict[str, dict[int, dict[str, Any]]] = {"gen_ai.prompt": {}, "gen_ai.completion": {}}
    tools: dict[int, dict[str, Any]] = {}
    for k, v in attrs.items():
        m = _FLAT.match(k)
        if m is not None:
            groups[m.group(1)].setdefault(int(m.group(2)), {})[m.group(3)] = v
        elif k.startswith(_FUNCTIONS):
            n, _, field = k[len(_FUNCTIONS) :].partition(".")
            if n.isdigit() and field:
                tools.setdefault(int(n), {})[field] = v
    if not groups["gen_ai.prompt"] and not groups["gen_ai.completion"]:
        return None
    defs = [_tool(tools[i]) for i in sorted(tools)]
    return CallContent(
        _flat_messages(groups["gen_ai.prompt"]),
        _flat_messages(groups["gen_ai.completion"]),
        [d for d in defs if d is not None],
        "openllmetry",
    )


def _oi_messages(by_index: dict[int, dict[str, Any]]) -> list[Message]:
    out: list[Message] = []
    for i in sorted(by_index):
        f = _nest(by_index[i])
        role = _role(f.get("role"))
        content = _text(f.get("content"))
        bad = ""
        if content is None and "contents" in f:
            parts = []
            for k in sorted(f["contents"]):
                c = f["contents"][k]
                t = str(c.get("message_content.type") or "text")
                parts.append({"type": t, "text": c.get("message_content.text")})
            content, bad = _parts_content(parts)
        calls: list[ToolCall] = []
        for j in sorted(f.get("tool_calls", {})):
            c = f["tool_calls"][j]
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
    groups: dict[str, dict[int, dict[str, Any]]] = {"input": {}, "output": {}}
    tools: dict[int, Any] = {}
    for k, v in attrs.items():
        m = _OI.match(k)
        if m is not None:
            groups[m.group(1)].setdefault(int(m.group(2)), {})[m.group(3)] = v
        elif k.startswith("llm.tools.") and k.endswith(".tool.json_schema"):
            n = k[len("llm.tools.") : -len(".tool.json_schema")]
            if n.isdigit():
                tools[int(n)] = v
    if not groups["input"] and not groups["output"]:
        return None
    defs = [_tool(tools[i]) for i in sorted(tools)]
    return CallContent(
        _oi_messages(groups["input"]),
        _oi_messages(groups["output"]),
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
    """The content of the span whose body is `raw[b0:b1]` (see the module docstring)."""
    if CONTENT_MARKERS.search(raw, b0, b1) is None:
        return None
    attrs: dict[str, Any] = {}
    for k, v in wirescan.attributes(raw, b0, b1, None, None):
        attrs.setdefault(k, v)
    events = _events(raw, b0, b1) if _EVENTS_MARKER.search(raw, b0, b1) else []
    got = read_values(attrs, events)
    if got is None or (not got.input and not got.output):
        return None
    return got
