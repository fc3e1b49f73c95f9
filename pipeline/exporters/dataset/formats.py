"""Checking an example, and writing it as one JSON line of `openai_chat` or `hf_chat`.

Checks (an example that fails one is never written; it is counted under the reason):

- `role`: a role other than system, developer, user, assistant and tool;
- `role_order`: a system or developer message after the conversation began; a tool message
  that does not follow an assistant message with tool calls (or another tool message);
  no user message before the first assistant message;
- `tool_call_id`: a tool call without an id, or a tool message whose `tool_call_id` names
  no open call of the assistant message before it;
- `unanswered_tool_call`: a tool call, in an assistant message other than the last, with
  no tool message answering it before the next user or assistant message;
- `arguments_json`: tool call arguments that are not a JSON object;
- `empty_assistant`: an assistant message with neither text nor tool calls;
- `unsupported_content`: a part that has no place in a text example (an image, a file);
- `no_assistant`, `last_not_assistant`: the example must end with the assistant turn it
  teaches.

`openai_chat` (OpenAI's fine-tuning format for chat models): `{"messages": [...], "tools":
[...], "parallel_tool_calls": true}`; assistant tool calls `{"id", "type": "function",
"function": {"name", "arguments": "<JSON text>"}}`; tool results `{"role": "tool",
"tool_call_id", "content"}`; a `developer` message is written as `system`; `weight` on
assistant messages when the example has weights; `tools` only when the call offered
some, `parallel_tool_calls: true` only when an assistant turn makes several calls.

`hf_chat` (the conversational format of TRL's `SFTTrainer`, rendered by a chat
template): `{"messages": [...], "tools": [...]}`, arguments as a JSON object, `content`
always a string ("" for an assistant turn that only calls tools).
"""

from __future__ import annotations

from typing import Any

import msgspec

from pipeline.exporters.dataset.examples import Draft

__all__ = ["INVALID", "check", "render"]

INVALID = (
    "role",
    "role_order",
    "tool_call_id",
    "unanswered_tool_call",
    "arguments_json",
    "empty_assistant",
    "unsupported_content",
    "no_assistant",
    "last_not_assistant",
)
_ROLES = frozenset(("system", "developer", "user", "assistant", "tool"))
_decode = msgspec.json.Decoder().decode


def check(d: Draft) -> str:
    """The first reason the example is invalid, "" if it is valid."""
    msgs = d.messages
    if not any(m.role == "assistant" for m in msgs):
        return "no_assistant"
    if msgs[-1].role != "assistant":
        return "last_not_assistant"
    started = False
    seen_user = False
    open_calls: set[str] = set()
    pending: set[str] = set()  # calls of the last assistant message not answered yet
    prev = ""
    last = len(msgs) - 1
    for k, m in enumerate(msgs):
        role = m.role
        if role not in _ROLES:
            return "role"
        if m.unsupported:
            return "unsupported_content"
        if role in ("system", "developer"):
            if started:
                return "role_order"
        else:
            started = True
        if role == "user":
            seen_user = True
        if role in ("user", "assistant") and pending:
            return "unanswered_tool_call"
        if role == "assistant":
            if not seen_user:
                return "role_order"
            if not m.tool_calls and not m.content:
                return "empty_assistant"
            open_calls = set()
            for c in m.tool_calls:
                if not c.id or c.id in open_calls:
                    return "tool_call_id"
                try:
                    args = _decode(c.arguments)
                except msgspec.DecodeError:
                    return "arguments_json"
                if not isinstance(args, dict):
                    return "arguments_json"
                open_calls.add(c.id)
            pending = set(open_calls) if k != last else set()
        elif role == "tool":
            if prev not in ("assistant", "tool") or not open_calls:
                return "role_order"
            if m.tool_call_id not in open_calls:
                return "tool_call_id"
            pending.discard(m.tool_call_id)
        prev = role
    return ""


def render(d: Draft, fmt: str) -> dict[str, Any]:
    """The example as the format has it (a checked example)."""
    hf = fmt == "hf_chat"
    out: list[dict[str, Any]] = []
    a = 0
    for m in d.messages:
        role = m.role
        if role == "developer" and not hf:
            role = "system"
        msg: dict[str, Any] = {"role": role}
        if role == "assistant":
            if m.content is not None and (m.content or not m.tool_calls):
                msg["content"] = m.content
            elif hf:
                msg["content"] = ""
            if m.tool_calls:
                msg["tool_calls"] = [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {
                            "name": c.name,
                            "arguments": _decode(c.arguments) if hf else c.arguments,
                        },
                    }
                    for c in m.tool_calls
                ]
            if d.weights is not None and not hf:
                msg["weight"] = d.weights[a]
            a += 1
        elif role == "tool":
            msg["tool_call_id"] = m.tool_call_id
            msg["content"] = m.content or ""
        else:
            msg["content"] = m.content or ""
            if m.name and role == "user":
                msg["name"] = m.name
        out.append(msg)
    ex: dict[str, Any] = {"messages": out}
    if d.tools:
        ex["tools"] = d.tools
        if not hf and any(len(m.tool_calls) > 1 for m in d.messages):
            ex["parallel_tool_calls"] = True
    return ex
