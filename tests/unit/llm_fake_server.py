"""A local fake of the OpenAI and Anthropic HTTP APIs (the network edge), recording every request it gets.

The real SDK clients talk to it through `base_url`; tests read `requests` to prove what left the process.
`fail_first` answers that many requests with HTTP 500 (the SDKs retry), `delay_s` sleeps before answering
(the SDKs time out), `reply` is the assistant text.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeLLMServer:
    def __init__(self, reply: str = "ok", fail_first: int = 0, delay_s: float = 0.0) -> None:
        self.reply, self.fail_first, self.delay_s = reply, fail_first, delay_s
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw or b"{}")
                server.requests.append({"path": self.path, "body": body, "raw": raw.decode()})
                if server.delay_s:
                    time.sleep(server.delay_s)
                if len(server.requests) <= server.fail_first:
                    return self._send(500, {"error": {"message": "overloaded", "type": "server_error"}})
                if self.path.endswith("/chat/completions"):
                    return self._send(200, server.openai_reply(body))
                if self.path.endswith("/messages"):
                    return self._send(200, server.anthropic_reply(body))
                return self._send(404, {"error": {"message": f"no route {self.path}"}})

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("retry-after-ms", "10")
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeLLMServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def openai_reply(self, body: dict) -> dict:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": self.reply}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 40, "total_tokens": 160},
        }

    def anthropic_reply(self, body: dict) -> dict:
        return {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "fake"),
            "content": [{"type": "text", "text": self.reply}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 110, "output_tokens": 30},
        }
