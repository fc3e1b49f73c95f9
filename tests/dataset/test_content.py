"""Reading a call's conversation (`processors.genai.content`) in shapes the generator does
not write: OpenAI-like messages in `gen_ai.input.messages`, several tool results in one
message, reasoning parts, `model` roles, legacy function calls, JSON text content; and
`read_head` agreeing with `read_call` on what a call answered."""

from __future__ import annotations

import json
import os

import pytest

from pipeline.testing import make_span, make_traces
from processors.genai.content import Message, ToolCall, read_call, read_head, read_values


def test_otel_parts_with_several_tool_results_reasoning_and_model_role():
    got = read_values(
        {
            "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "Be brief."}]),
            "gen_ai.input.messages": json.dumps(
                [
                    {"role": "user", "parts": [{"type": "text", "content": "two cities"}]},
                    {
                        "role": "model",
                        "parts": [
                            {"type": "reasoning", "content": "think"},
                            {"type": "tool_call", "id": "a", "name": "w", "arguments": {"c": 1}},
                            {"type": "tool_call", "id": "b", "name": "w", "arguments": '{"c":2}'},
                        ],
                    },
                    {
                        "role": "user",
                        "parts": [
                            {"type": "tool_call_response", "id": "a", "response": {"t": 1}},
                            {"type": "tool_call_response", "id": "b", "result": "2 degrees"},
                        ],
                    },
                ]
            ),
            "gen_ai.output.messages": [  # structured, not JSON text
                {"role": "assistant", "parts": [{"type": "text", "content": "ok"}]}
            ],
        },
        [],
    )
    assert got is not None
    assert got.input == [
        Message("system", "Be brief."),
        Message("user", "two cities"),
        Message("assistant", None, (ToolCall("a", "w", '{"c":1}'), ToolCall("b", "w", '{"c":2}'))),
        Message("tool", '{"t":1}', tool_call_id="a"),
        Message("tool", "2 degrees", tool_call_id="b"),
    ]
    assert got.output == [Message("assistant", "ok")]


def test_openai_like_messages_and_legacy_function_calls():
    got = read_values(
        {
            "gen_ai.input.messages": json.dumps(
                [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
            ),
            "gen_ai.output.messages": json.dumps(
                [{"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}}]
            ),
        },
        [],
    )
    assert got is not None
    assert got.input == [Message("user", "hi")]
    assert got.output == [Message("assistant", None, (ToolCall("", "f", "{}"),))]


def test_json_text_content_stays_text_and_images_are_marked():
    got = read_values(
        {
            "gen_ai.prompt.0.role": "user",
            "gen_ai.prompt.0.content": json.dumps(
                [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": "x"}]
            ),
            "gen_ai.prompt.1.role": "tool",
            "gen_ai.prompt.1.tool_call_id": "c",
            "gen_ai.prompt.1.content": '{"rows": [1, 2]}',
            "gen_ai.completion.0.role": "assistant",
            "gen_ai.completion.0.content": "[1, 2]",
        },
        [],
    )
    assert got is not None and got.convention == "openllmetry"
    assert got.input[0] == Message("user", "look", unsupported="image_url")
    assert got.input[1] == Message("tool", '{"rows": [1, 2]}', tool_call_id="c")
    assert got.output == [Message("assistant", "[1, 2]")]


@pytest.mark.parametrize("style", ["otel", "openinference", "openllmetry"])
def test_read_head_is_the_first_answer_read_call_finds(style):
    inp = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"},
    ]
    if style == "otel":
        attrs = {
            "gen_ai.input.messages": json.dumps(
                [
                    {"role": m["role"], "parts": [{"type": "text", "content": m["content"]}]}
                    for m in inp
                ]
            ),
            "gen_ai.output.messages": json.dumps(
                [{"role": "assistant", "parts": [{"type": "text", "content": "a2"}]}]
            ),
        }
    elif style == "openinference":
        attrs = {}
        for i, m in enumerate(inp):
            attrs[f"llm.input_messages.{i}.message.role"] = m["role"]
            attrs[f"llm.input_messages.{i}.message.content"] = m["content"]
        attrs["llm.output_messages.0.message.role"] = "assistant"
        attrs["llm.output_messages.0.message.content"] = "a2"
    else:
        attrs = {}
        for i, m in enumerate(inp):
            attrs[f"gen_ai.prompt.{i}.role"] = m["role"]
            attrs[f"gen_ai.prompt.{i}.content"] = m["content"]
        attrs["gen_ai.completion.0.role"] = "assistant"
        attrs["gen_ai.completion.0.content"] = "a2"
    span = make_span("chat x", os.urandom(16), os.urandom(8), attributes=attrs)
    raw = make_traces([span]).to_bytes()
    from pipeline import wirescan

    (info,) = wirescan.spans(raw)
    full = read_call(raw, info[9], info[10])
    head = read_head(raw, info[9], info[10])
    assert full is not None and head is not None
    assert head.output == full.output[0] == Message("assistant", "a2")
    assert head.inputs <= len(full.input) == 3
    if style != "otel":
        assert head.inputs == 3
