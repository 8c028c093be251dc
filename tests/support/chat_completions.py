"""A real HTTP server on 127.0.0.1 that plays an OpenAI-compatible LLM: it answers
`POST /v1/chat/completions`, records every request (headers included, so tests can check the
bearer key), and answers with scripted replies (status, headers, body, delay) or, unscripted,
with a completion that quotes the last message.

    server = ChatCompletionsServer().start()
    settings.LLM_BACKEND = "openai"; settings.OPENAI_BASE_URL = server.base_url
    server.then(ChatReply(status=429, headers={"Retry-After": "7"}), ChatReply(text="hi"))
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class ChatRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def bearer(self) -> str:
        value = self.headers.get("authorization", "")
        return value.removeprefix("Bearer ")


@dataclass
class ChatReply:
    """One scripted answer. With `body` unset, a chat completion of `text` (or, with `text`
    unset too, one quoting the last message) carrying the given usage."""

    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    text: str | None = None
    model: str | None = None  # None: the requested model
    prompt_tokens: int = 11
    completion_tokens: int = 7
    content_type: str = "application/json"


def completion_body(
    text: str | None, *, model: str, prompt_tokens: int = 11, completion_tokens: int = 7, choices: bool = True
) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ]
            if choices
            else [],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    ).encode()


def error_body(message: str, *, type: str = "invalid_request_error", code: str | None = None) -> bytes:  # noqa: A002
    return json.dumps({"error": {"message": message, "type": type, "param": None, "code": code}}).encode()


class ChatCompletionsServer:
    def __init__(self) -> None:
        self.requests: list[ChatRequest] = []
        self.script: deque[ChatReply] = deque()
        self.default = ChatReply()
        # Requests being answered now, and the most ever answered at once.
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; with Nagle on, the body would wait for
            # the client's delayed ACK (40 ms a request).
            disable_nagle_algorithm = True

            def setup(self) -> None:
                super().setup()
                with server._lock:
                    server._connections.add(self.connection)

            def finish(self) -> None:
                with server._lock:
                    server._connections.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with server._lock:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    server.requests.append(ChatRequest("POST", self.path, headers, body))
                    reply = server.script.popleft() if server.script else server.default
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    if reply.delay_s:
                        time.sleep(reply.delay_s)
                finally:
                    # Before the answer goes out: the client may send its next request the
                    # moment it has this one's answer.
                    with server._lock:
                        server.in_flight -= 1
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {}, error_body(f"No route {self.path}", code="not_found"), "application/json")
                    return
                self._send(reply.status, reply.headers, server._body(reply, body), reply.content_type)

            def _send(self, status: int, headers: dict[str, str], body: bytes, content_type: str) -> None:
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped waiting (a timeout test)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @staticmethod
    def _body(reply: ChatReply, request_body: bytes) -> bytes:
        if reply.body is not None:
            return reply.body
        try:
            request = json.loads(request_body)
        except ValueError:
            request = {}
        text = reply.text
        if text is None:
            messages = request.get("messages") or [{}]
            text = f"Fake LLM reply to: {messages[-1].get('content', '')}"
        return completion_body(
            text,
            model=reply.model or str(request.get("model", "")),
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
        )

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def base_url(self) -> str:
        """What OPENAI_BASE_URL is set to."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> ChatCompletionsServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stops listening and closes the connections clients keep alive, so that no handler
        thread outlives the server."""
        self.server.shutdown()
        self.server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def then(self, *replies: ChatReply) -> ChatCompletionsServer:
        with self._lock:
            self.script.extend(replies)
        return self

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.script.clear()
            self.default = ChatReply()
            self.max_in_flight = self.in_flight

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ChatRequest]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.requests) < count:
            time.sleep(0.02)
        return list(self.requests)
