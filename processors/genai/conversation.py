"""The canonical form of a call's conversation (`processors.genai.content` reads into it):
frozen, hashable msgspec Structs, compared and used as keys by the dataset exporter. (In a
module of their own: mypyc, should `content` be compiled, drops a class's keyword
arguments such as `frozen=True`.)"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["CallContent", "Head", "Message", "ToolCall"]


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


class Head(msgspec.Struct, frozen=True):
    """A call's first output message, and the number of messages its input holds at least:
    a count from the span's keys where it is cheap (flattened conventions, events), else 0
    (OTel's `gen_ai.input.messages` is not read for it: a JSON text as long as the
    conversation)."""

    output: Message
    inputs: int
