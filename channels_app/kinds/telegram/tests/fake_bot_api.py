"""A local fake of the Telegram Bot API for the tests: a real HTTP server on a free port that
takes `POST /bot<token>/<method>` (JSON or form body), keeps every call, and answers with the
Bot API's own shapes (the JSON fixtures beside this file), or as a test scripts it."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# What each method answers when nothing is scripted.
DEFAULT_ANSWERS = {
    "setWebhook": "answer_set_webhook.json",
    "getMe": "answer_get_me.json",
    "sendMessage": "answer_send_message.json",
    "sendChatAction": "answer_send_chat_action.json",
}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@dataclass
class BotCall:
    token: str
    method: str
    body: dict[str, Any]
    content_type: str


@dataclass
class Answer:
    status: int
    body: dict[str, Any]

    @classmethod
    def of(cls, name: str) -> Answer:
        body = fixture(name)
        return cls(status=int(body.get("error_code", 200)), body=body)


class FakeBotApi:
    def __init__(self) -> None:
        self.calls: list[BotCall] = []
        self._scripted: dict[str, list[Answer]] = {}
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                content_type = self.headers.get("Content-Type", "")
                status, answer = fake._answer(self.path, raw, content_type)
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeBotApi:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self._scripted.clear()

    def then(self, method: str, *answers: Answer) -> None:
        """The next calls of `method` get these answers, in order; then the default one."""
        with self._lock:
            self._scripted.setdefault(method, []).extend(answers)

    def of(self, method: str) -> list[BotCall]:
        return [call for call in self.calls if call.method == method]

    def _answer(self, path: str, raw: bytes, content_type: str) -> tuple[int, dict[str, Any]]:
        # /bot<token>/<method>: the Bot API's only shape of URL.
        parts = path.split("/")
        if len(parts) != 3 or not parts[1].startswith("bot"):
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        token, method = parts[1][3:], parts[2]
        if "json" in content_type:
            body = json.loads(raw) if raw else {}
        else:
            body = dict(parse_qsl(raw.decode()))
        with self._lock:
            self.calls.append(BotCall(token=token, method=method, body=body, content_type=content_type))
            scripted = self._scripted.get(method)
            if scripted:
                answer = scripted.pop(0)
                return answer.status, answer.body
        if method not in DEFAULT_ANSWERS:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found: method not found"}
        if method == "sendMessage":
            # Telegram answers with the Message it sent: the text it got.
            sent = fixture(DEFAULT_ANSWERS[method])
            sent["result"]["text"] = body.get("text")
            return 200, sent
        return 200, fixture(DEFAULT_ANSWERS[method])
