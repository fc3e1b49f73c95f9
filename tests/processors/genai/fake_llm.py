"""Fake OpenAI- and Anthropic-compatible APIs on loopback (stdlib HTTP server in a thread).

Behaviour per request, from the `x-fake-scenario` request header:
- `ok` (default): a normal answer; the served model is the dated snapshot of the one asked.
- `fail-once`: 500 on the first try (the SDK's `x-stainless-retry-count: 0`), then ok.
- `fail-first:<n>`: 500 for the first `n` requests carrying this very header value, then
  ok (a retry made above the SDK, e.g. by a framework, sends a retry count of 0 again).
- `always-500`: 500 every time.
- `replay`: answers with the previous response's id (a cache replaying a stored answer).
- `give-up`: in an agent turn, a tool error is answered with a final text (no new call).
Anything after a `#` is a tag (one run's requests told apart): `fail-once#a` acts as
`fail-once`. The agent apps send `<kind>#<run tag>:<scenario>` (see `log_for`).

A scripted answer: an OpenAI request carrying the `x-fake-reply` header gets that
assistant message (JSON: `{"content": ...}` or `{"tool_calls": [...]}`) instead of the
agent-turn script, so a multi-turn, tool-calling app is deterministic to the message.

An agent turn: when the request offers tools (OpenAI `tools`, Anthropic `tools`), the
answer follows a small script instead of plain text: no tool result in the conversation
yet -> call the first tool offered (arguments made from its JSON schema); the last tool
result reports an error (the text `error`, or Anthropic `is_error`) -> call that tool
again; else -> a final text answer.

`requests` logs every request in arrival order (`Logged`): the ground truth the tests
compare the enriched spans with. `exchanges` logs every answered (200) chat request as
`(request body, assistant message returned)`: what the app sent and got, message for
message.
"""

from __future__ import annotations

import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

SNAPSHOTS = {"gpt-4o": "gpt-4o-2024-08-06", "gpt-4o-mini": "gpt-4o-mini-2024-07-18"}


class Logged(NamedTuple):
    path: str
    scenario: str
    retry: int  # x-stainless-retry-count
    model: str  # asked for
    status: int
    reply: str  # "text" | "tool:<name>" | "error"


def _sample(schema: dict[str, Any]) -> Any:
    t = schema.get("type")
    if t == "object":
        props = schema.get("properties") or {}
        return {k: _sample(v if isinstance(v, dict) else {}) for k, v in props.items()}
    if t == "integer":
        return 2
    if t == "number":
        return 2.5
    if t == "boolean":
        return True
    if t == "array":
        return []
    return "Paris"


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(_text_of(c.get("text") or c.get("content") or "") for c in content)
    return ""


def _openai_turn(body: dict[str, Any], again: bool) -> tuple[str, dict[str, Any]] | None:
    """(tool name, arguments) to call, or None for a final answer (`again`: call a tool
    whose last result was an error again)."""
    tools = [t.get("function") or t for t in body.get("tools") or []]
    if not tools:
        return None
    msgs = body.get("messages") or []
    results = [m for m in msgs if m.get("role") == "tool"]
    if not results:
        tool = tools[0]
        return tool["name"], _sample(tool.get("parameters") or {})
    last = results[-1]
    if again and "error" in _text_of(last.get("content")).lower():
        called = {
            tc["id"]: tc["function"]
            for m in msgs
            if m.get("role") == "assistant"
            for tc in m.get("tool_calls") or []
        }
        fn = called.get(last.get("tool_call_id"), {"name": tools[0]["name"]})
        spec = next((t for t in tools if t["name"] == fn["name"]), tools[0])
        return spec["name"], _sample(spec.get("parameters") or {})
    return None


def _anthropic_turn(body: dict[str, Any], again: bool) -> tuple[str, dict[str, Any]] | None:
    tools = body.get("tools") or []
    if not tools:
        return None
    results: list[dict[str, Any]] = []
    uses: dict[str, str] = {}
    for m in body.get("messages") or []:
        content = m.get("content")
        if not isinstance(content, list):
            continue
        for block in content:
            if block.get("type") == "tool_result":
                results.append(block)
            elif block.get("type") == "tool_use":
                uses[block["id"]] = block["name"]
    if not results:
        return tools[0]["name"], _sample(tools[0].get("input_schema") or {})
    last = results[-1]
    if again and (last.get("is_error") or "error" in _text_of(last.get("content")).lower()):
        name = uses.get(last.get("tool_use_id", ""), tools[0]["name"])
        spec = next((t for t in tools if t["name"] == name), tools[0])
        return spec["name"], _sample(spec.get("input_schema") or {})
    return None


class FakeLLM:
    def __init__(self) -> None:
        self.counter = itertools.count(1)
        self.requests: list[Logged] = []
        self.exchanges: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.last_id = ""
        self._failed: dict[str, int] = {}
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                n = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(n) or b"{}")
                scenario = self.headers.get("x-fake-scenario", "ok")
                kind = scenario.split("#", 1)[0]
                retry = int(self.headers.get("x-stainless-retry-count", "0"))
                model = str(body.get("model", ""))
                with fake._lock:
                    fail = kind == "always-500" or (kind == "fail-once" and retry == 0)
                    if kind.startswith("fail-first:"):
                        want = int(kind.rsplit(":", 1)[1])
                        seen = fake._failed.get(scenario, 0)
                        fail = seen < want
                        fake._failed[scenario] = seen + 1
                    if fail:
                        fake.requests.append(
                            Logged(self.path, scenario, retry, model, 500, "error")
                        )
                        self._send(500, {"error": {"message": "boom", "type": "server_error"}})
                        return
                    if kind == "replay" and fake.last_id:
                        rid = fake.last_id
                    else:
                        rid = f"{next(fake.counter):06d}"
                    if self.path.endswith("/chat/completions"):
                        scripted = self.headers.get("x-fake-reply")
                        call = None if scripted else _openai_turn(body, kind != "give-up")
                        reply = f"tool:{call[0]}" if call else "text"
                        rid = rid if rid.startswith("chatcmpl-") else f"chatcmpl-{rid}"
                        obj = self._openai(body, rid, call, scripted)
                        fake.exchanges.append((body, obj["choices"][0]["message"]))
                    elif self.path.endswith("/messages"):
                        call = _anthropic_turn(body, kind != "give-up")
                        reply = f"tool:{call[0]}" if call else "text"
                        rid = rid if rid.startswith("msg_") else f"msg_{rid}"
                        obj = self._anthropic(body, rid, call)
                    else:
                        fake.requests.append(
                            Logged(self.path, scenario, retry, model, 404, "error")
                        )
                        self._send(404, {"error": {"message": "not found"}})
                        return
                    fake.last_id = rid
                    fake.requests.append(Logged(self.path, scenario, retry, model, 200, reply))
                self._send(200, obj)

            def _openai(
                self,
                body: dict[str, Any],
                rid: str,
                call: tuple[str, dict[str, Any]] | None,
                scripted: str | None = None,
            ) -> dict[str, Any]:
                model = body.get("model", "gpt-4o")
                message: dict[str, Any] = {"role": "assistant", "content": "done"}
                if scripted:
                    script = json.loads(scripted)
                    message = {"role": "assistant", "content": script.get("content")}
                    if script.get("tool_calls"):
                        message["tool_calls"] = script["tool_calls"]
                elif call is not None:
                    message = {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": f"call_{rid[-6:]}",
                                "type": "function",
                                "function": {"name": call[0], "arguments": json.dumps(call[1])},
                            }
                        ],
                    }
                return {
                    "id": rid,
                    "object": "chat.completion",
                    "created": 1_700_000_000,
                    "model": SNAPSHOTS.get(model, model),
                    "choices": [
                        {
                            "index": 0,
                            "message": message,
                            "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
                }

            def _anthropic(
                self, body: dict[str, Any], rid: str, call: tuple[str, dict[str, Any]] | None
            ) -> dict[str, Any]:
                model = body.get("model", "claude-sonnet-4-6")
                content: list[dict[str, Any]] = [{"type": "text", "text": "done"}]
                if call is not None:
                    content = [
                        {
                            "type": "tool_use",
                            "id": f"toolu_{rid[-6:]}",
                            "name": call[0],
                            "input": call[1],
                        }
                    ]
                return {
                    "id": rid,
                    "type": "message",
                    "role": "assistant",
                    "model": f"{model}-20260115",
                    "content": content,
                    "stop_reason": "tool_use" if call else "end_turn",
                    "stop_sequence": None,
                    "usage": {"input_tokens": 12, "output_tokens": 3},
                }

            def _send(self, code: int, obj: dict[str, Any]) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._httpd.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def log(self, scenario: str) -> list[Logged]:
        """The requests that carried `scenario`, in arrival order."""
        with self._lock:
            return [r for r in self.requests if r.scenario == scenario]

    def log_for(self, tag: str, scenario: str) -> list[Logged]:
        """The requests an agent app's run (`--tag`) sent in one of its scenarios."""
        end = f"#{tag}:{scenario}"
        with self._lock:
            return [r for r in self.requests if r.scenario.endswith(end)]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)
