"""Fake OpenAI- and Anthropic-compatible APIs on loopback (stdlib HTTP server in a thread).

Behaviour per request, from the `x-fake-scenario` request header:
- `ok` (default): a normal answer; the served model is the dated snapshot of the one asked.
- `fail-once`: 500 on the first try (the SDK's `x-stainless-retry-count: 0`), then ok.
- `always-500`: 500 every time.
- `replay`: answers with the previous response's id (a cache replaying a stored answer).
"""

from __future__ import annotations

import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SNAPSHOTS = {"gpt-4o": "gpt-4o-2024-08-06", "gpt-4o-mini": "gpt-4o-mini-2024-07-18"}


class FakeLLM:
    def __init__(self) -> None:
        self.counter = itertools.count(1)
        self.requests: list[tuple[str, str, int]] = []
        self.last_id = ""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                n = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(n) or b"{}")
                scenario = self.headers.get("x-fake-scenario", "ok")
                retry = int(self.headers.get("x-stainless-retry-count", "0"))
                fake.requests.append((self.path, scenario, retry))
                if scenario == "always-500" or (scenario == "fail-once" and retry == 0):
                    self._send(500, {"error": {"message": "boom", "type": "server_error"}})
                    return
                if scenario == "replay" and fake.last_id:
                    rid = fake.last_id
                else:
                    rid = f"{next(fake.counter):06d}"
                if self.path.endswith("/chat/completions"):
                    model = body.get("model", "gpt-4o")
                    rid = rid if rid.startswith("chatcmpl-") else f"chatcmpl-{rid}"
                    fake.last_id = rid
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
                                    "message": {"role": "assistant", "content": "done"},
                                    "finish_reason": "stop",
                                }
                            ],
                            "usage": {
                                "prompt_tokens": 12,
                                "completion_tokens": 3,
                                "total_tokens": 15,
                            },
                        },
                    )
                elif self.path.endswith("/messages"):
                    model = body.get("model", "claude-sonnet-4-6")
                    rid = rid if rid.startswith("msg_") else f"msg_{rid}"
                    fake.last_id = rid
                    self._send(
                        200,
                        {
                            "id": rid,
                            "type": "message",
                            "role": "assistant",
                            "model": f"{model}-20260115",
                            "content": [{"type": "text", "text": "done"}],
                            "stop_reason": "end_turn",
                            "stop_sequence": None,
                            "usage": {"input_tokens": 12, "output_tokens": 3},
                        },
                    )
                else:
                    self._send(404, {"error": {"message": "not found"}})

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
