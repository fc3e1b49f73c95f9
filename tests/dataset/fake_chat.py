"""A fake OpenAI chat-completions API on loopback that answers what the caller scripts, and
logs every request it answered with the response it gave.

The app under test says, per request, what the "model" replies: the `x-fake-reply` header
holds the assistant message as JSON (`{"content": ...}` or `{"tool_calls": [...]}`), so a
multi-turn, tool-calling agent is deterministic without a model. `x-fake-scenario:
always-500` fails the request (for fallbacks), as `FakeLLM` does.

`log`: per successful request, `(body, response message)`: the request body as the server
received it (the messages the app sent) and the assistant message it returned.
"""

from __future__ import annotations

import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.processors.genai.fake_llm import SNAPSHOTS


class FakeChat:
    def __init__(self) -> None:
        self.counter = itertools.count(1)
        self.log: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.failed: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                n = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(n) or b"{}")
                if not self.path.endswith("/chat/completions"):
                    self._send(404, {"error": {"message": "not found"}})
                    return
                if self.headers.get("x-fake-scenario") == "always-500":
                    fake.failed.append(body)
                    self._send(500, {"error": {"message": "boom", "type": "server_error"}})
                    return
                reply = json.loads(self.headers.get("x-fake-reply") or '{"content": "done"}')
                message: dict[str, Any] = {"role": "assistant", "content": reply.get("content")}
                if reply.get("tool_calls"):
                    message["tool_calls"] = reply["tool_calls"]
                model = body.get("model", "gpt-4o")
                rid = f"chatcmpl-{next(fake.counter):06d}"
                fake.log.append((body, message))
                self._send(
                    200,
                    {
                        "id": rid,
                        "object": "chat.completion",
                        "created": 1_700_000_000,
                        "model": SNAPSHOTS.get(model, model),
                        "choices": [
                            {
                                "index": 0,
                                "message": message,
                                "finish_reason": "tool_calls"
                                if reply.get("tool_calls")
                                else "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25},
                    },
                )

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

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)
