"""Strict validators of the two dataset formats, written from the formats' own rules and
independent of the exporter's code (a test that used the exporter's checks to check the
exporter could not fail).

`openai_chat`: OpenAI's fine-tuning format for chat models, with tools: a line is an object
with `messages` (required), `tools`, `parallel_tool_calls` and nothing else; a message's
keys depend on its role (system/user: role, content, name; assistant: role, content,
name, tool_calls, weight; tool: role, content, tool_call_id); content is a string (an
assistant message that calls tools may have none); `weight` is 0 or 1 and only on
assistant messages; a tool call is `{"id", "type": "function", "function": {"name",
"arguments"}}` with arguments a string holding a JSON object; a tool message answers a
call of the assistant message before it; an example has an assistant message; a tool is
`{"type": "function", "function": {"name", "description"?, "parameters"?, "strict"?}}`
and every call names one of the example's tools.

`hf_chat`: the conversational format TRL's `SFTTrainer` takes (rendered with the
tokenizer's chat template by `apply_chat_template`): `messages` and optionally `tools`;
every `content` a string; roles system/user/assistant/tool; an assistant's `tool_calls`
`[{"type": "function", "function": {"name", "arguments": <object>}}]` (templates render
the arguments with `tojson`: a string would be encoded twice); the conversation ends
with an assistant turn. `check_hf_rows` also checks what `datasets` needs to load the
file as one table: the same type for a key in every row.
"""

from __future__ import annotations

import json
from typing import Any

_OPENAI_KEYS = {
    "system": {"role", "content", "name"},
    "user": {"role", "content", "name"},
    "assistant": {"role", "content", "name", "tool_calls", "weight"},
    "tool": {"role", "content", "tool_call_id"},
}


def _tools_errors(tools: Any, nested_args: bool) -> tuple[list[str], set[str]]:
    errs: list[str] = []
    names: set[str] = set()
    if not isinstance(tools, list) or not tools:
        return ["tools: a non-empty list"], names
    for i, t in enumerate(tools):
        if not isinstance(t, dict) or set(t) != {"type", "function"} or t["type"] != "function":
            errs.append(f"tools[{i}]: want {{type: function, function}}")
            continue
        fn = t["function"]
        if not isinstance(fn, dict) or not set(fn) <= {
            "name",
            "description",
            "parameters",
            "strict",
        }:
            errs.append(f"tools[{i}].function: unknown keys")
            continue
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            errs.append(f"tools[{i}].function.name: a non-empty string")
        else:
            names.add(fn["name"])
        if "parameters" in fn and (
            not isinstance(fn["parameters"], dict) or fn["parameters"].get("type") != "object"
        ):
            errs.append(f"tools[{i}].function.parameters: a JSON Schema of an object")
    return errs, names


def check_openai_chat(ex: Any) -> list[str]:
    """The rule violations of one `openai_chat` line (parsed), [] when it is valid."""
    errs: list[str] = []
    if not isinstance(ex, dict):
        return ["not an object"]
    if not set(ex) <= {"messages", "tools", "parallel_tool_calls"}:
        errs.append(
            f"unknown top-level keys {sorted(set(ex) - {'messages', 'tools', 'parallel_tool_calls'})}"
        )
    msgs = ex.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return [*errs, "messages: a non-empty list"]
    names: set[str] | None = None
    if "tools" in ex:
        terrs, names = _tools_errors(ex["tools"], False)
        errs += terrs
    if "parallel_tool_calls" in ex and not isinstance(ex["parallel_tool_calls"], bool):
        errs.append("parallel_tool_calls: a bool")
    open_ids: set[str] = set()
    prev = ""
    assistants = 0
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or m.get("role") not in _OPENAI_KEYS:
            errs.append(f"{where}: role not one of {sorted(_OPENAI_KEYS)}")
            continue
        role = m["role"]
        extra = set(m) - _OPENAI_KEYS[role]
        if extra:
            errs.append(f"{where}: keys {sorted(extra)} not allowed on {role}")
        content = m.get("content")
        if role == "assistant":
            assistants += 1
            calls = m.get("tool_calls")
            if content is not None and not isinstance(content, str):
                errs.append(f"{where}.content: a string")
            if not content and not calls:
                errs.append(f"{where}: neither content nor tool_calls")
            if "weight" in m and (type(m["weight"]) is not int or m["weight"] not in (0, 1)):
                errs.append(f"{where}.weight: 0 or 1")
            open_ids = set()
            if calls is not None:
                if not isinstance(calls, list) or not calls:
                    errs.append(f"{where}.tool_calls: a non-empty list")
                    calls = []
                for j, c in enumerate(calls):
                    w = f"{where}.tool_calls[{j}]"
                    if not isinstance(c, dict) or set(c) != {"id", "type", "function"}:
                        errs.append(f"{w}: want exactly id, type, function")
                        continue
                    if c["type"] != "function" or not isinstance(c["id"], str) or not c["id"]:
                        errs.append(f"{w}: type function and a non-empty id")
                    fn = c["function"]
                    if not isinstance(fn, dict) or set(fn) != {"name", "arguments"}:
                        errs.append(f"{w}.function: want exactly name, arguments")
                        continue
                    if not isinstance(fn["arguments"], str):
                        errs.append(f"{w}.function.arguments: a string")
                    else:
                        try:
                            if not isinstance(json.loads(fn["arguments"]), dict):
                                errs.append(f"{w}.function.arguments: a JSON object")
                        except ValueError:
                            errs.append(f"{w}.function.arguments: not JSON")
                    if names is not None and fn["name"] not in names:
                        errs.append(f"{w}: calls {fn['name']!r}, not one of the tools")
                    open_ids.add(c["id"])
        else:
            if not isinstance(content, str):
                errs.append(f"{where}.content: a string")
            if role == "tool":
                if prev not in ("assistant", "tool"):
                    errs.append(f"{where}: a tool message must follow the assistant's call")
                if m.get("tool_call_id") not in open_ids:
                    errs.append(f"{where}.tool_call_id: answers no call of the assistant before")
        prev = role
    if not assistants:
        errs.append("no assistant message")
    return errs


def check_hf_chat(ex: Any) -> list[str]:
    """The rule violations of one `hf_chat` line (parsed), [] when it is valid."""
    errs: list[str] = []
    if not isinstance(ex, dict) or not set(ex) <= {"messages", "tools"}:
        return ["want an object with messages and optionally tools"]
    msgs = ex.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return ["messages: a non-empty list"]
    if "tools" in ex:
        errs += _tools_errors(ex["tools"], True)[0]
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "tool"):
            errs.append(f"{where}: bad role")
            continue
        if not isinstance(m.get("content"), str):
            errs.append(f"{where}.content: a string (templates concatenate it)")
        for j, c in enumerate(m.get("tool_calls") or []):
            fn = c.get("function") if isinstance(c, dict) else None
            if c.get("type") != "function" or not isinstance(fn, dict):
                errs.append(f"{where}.tool_calls[{j}]: want {{type: function, function}}")
                continue
            if not isinstance(fn.get("name"), str) or not isinstance(fn.get("arguments"), dict):
                errs.append(f"{where}.tool_calls[{j}].function: name and arguments as an object")
        if m.get("tool_calls") and m["role"] != "assistant":
            errs.append(f"{where}: tool_calls on a {m['role']} message")
    if msgs[-1].get("role") != "assistant":
        errs.append("the last message is not the assistant's")
    return errs


def check_hf_rows(rows: list[dict[str, Any]]) -> list[str]:
    """Every message key has one type across the file (what one Arrow table needs)."""
    types: dict[str, set[str]] = {}
    for r in rows:
        for m in r["messages"]:
            for k, v in m.items():
                if k == "tool_calls":
                    continue
                types.setdefault(k, set()).add(type(v).__name__)
    return [f"messages.{k}: several types {sorted(t)}" for k, t in types.items() if len(t) > 1]


def read_lines(path: str) -> list[Any]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
