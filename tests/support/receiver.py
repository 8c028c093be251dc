"""A real HTTP server on 127.0.0.1 that plays a channel: it records every request and
answers with scripted statuses and delays."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes
    # When it arrived (time.monotonic()), before any scripted delay.
    at: float = field(default_factory=time.monotonic)

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"ok": true}'
    # Held until this is set (at most `hold_s`): a request that is in flight for as long as
    # the test needs, with no sleep to guess its length.
    release: threading.Event | None = None
    hold_s: float = 30.0


class ChannelReceiver:
    def __init__(self) -> None:
        self.requests: list[ReceivedRequest] = []
        self.script: deque[Reply] = deque()
        self.default = Reply()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as two writes: with Nagle's algorithm on, the second
            # waits for the client's delayed ACK, 40 ms per reply on a kept-alive connection.
            disable_nagle_algorithm = True

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if len(body) < length:
                    # The sender died mid-request (a worker killed with SIGKILL): as with any
                    # HTTP server, a request whose body never arrived whole reaches no one.
                    self.close_connection = True
                    return
                with receiver._lock:
                    # Keep header names exactly as sent (underscores included).
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    receiver.requests.append(ReceivedRequest(self.path, headers, body))
                    reply = receiver.script.popleft() if receiver.script else receiver.default
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.release is not None:
                    reply.release.wait(reply.hold_s)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> ChannelReceiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def then(self, *replies: Reply) -> ChannelReceiver:
        with self._lock:
            self.script.extend(replies)
        return self

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.script.clear()
            self.default = Reply()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedRequest]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.requests) < count:
            time.sleep(0.02)
        return list(self.requests)
