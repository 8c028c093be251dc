"""A local fake of the VK API (`POST /method/<name>`, form-encoded), on 127.0.0.1 and a free
port: messages.send, messages.setActivity and groups.getById, answering with the documented
shapes (fixtures/api_*.json). It records every call, and keeps VK's rule for messages.send: a
`random_id` already used in a peer sends nothing and answers the first message's id.

    vk = FakeVk().start()
    vk.then("messages.send", fixture("api_error_6.json"))  # the next call's answer
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@dataclass
class Call:
    method: str
    form: dict[str, str]
    content_type: str


@dataclass
class Scripted:
    body: Any
    status: int = 200


class FakeVk:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        # What reached the customer: messages.send calls VK did not drop as repeats.
        self.delivered: list[dict[str, str]] = []
        self._script: dict[str, deque[Scripted]] = defaultdict(deque)
        self._sent: dict[tuple[str, str], int] = {}
        self._next_id = 5000
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/method"

    def then(self, method: str, body: Any, status: int = 200) -> None:
        """The next unscripted call of `method` is answered with `body` (None: as usual)."""
        with self._lock:
            self._script[method].append(Scripted(body=body, status=status))

    def calls_of(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    def start(self) -> FakeVk:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                form = {key: values[-1] for key, values in parse_qs(raw, keep_blank_values=True).items()}
                method = self.path.removeprefix("/method/")
                status, body = fake._answer(
                    Call(method=method, form=form, content_type=self.headers.get("Content-Type", ""))
                )
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _answer(self, call: Call) -> tuple[int, Any]:
        with self._lock:
            self.calls.append(call)
            script = self._script[call.method]
            if script:
                scripted = script.popleft()
                if scripted.body is not None:
                    return scripted.status, scripted.body
            if not call.form.get("access_token") or not call.form.get("v"):
                return 200, fixture("api_error_5.json")
            if call.method == "messages.send":
                return 200, {"response": self._send(call.form)}
            if call.method == "messages.setActivity":
                return 200, fixture("api_messages_setActivity.json")
            if call.method == "groups.getById":
                return 200, fixture("api_groups_getById.json")
            return 200, {"error": {"error_code": 3, "error_msg": "Unknown method passed"}}

    def _send(self, form: dict[str, str]) -> int:
        key = (form.get("peer_id", ""), form.get("random_id", ""))
        if key in self._sent:
            return self._sent[key]
        self._next_id += 1
        self._sent[key] = self._next_id
        self.delivered.append(form)
        return self._next_id
