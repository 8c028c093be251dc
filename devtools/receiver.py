"""A channel for the tests, `make bench` and `make scale`: a real HTTP server that takes the
replies the platform POSTs, keeps what each user needs, and answers as it is told.

In a test's process: `ChannelReceiver().start()` listens on 127.0.0.1 (a free port unless one
is given), keeps every request (`requests`) and answers the scripted replies (`then`), then
`default`.

As a process of its own (`python -m devtools.receiver --port P [--host H]`), so that it takes
no CPU from the load generator:

- `POST <any path>` takes a reply. With `--hang-s S`, paths containing `/hang/` answer only after
  S seconds: a channel that hangs, for the benchmark's slow-neighbour scenario. A typing event
  (`{"type": "typing", ...}`) is kept with the requests, counted nowhere, and answered as
  `typing` says (200 unless a test says otherwise), never from the script.
- `GET /stats?path=P` answers what it counted (for one path, or all): posts, unique replies,
  duplicated ones (the same `in_reply_to` twice), bodies that are not JSON, posts without the
  bearer token, and posts whose `webhook-id` is not the body's `message_id`.
- `GET /receipts?path=P` answers, per `in_reply_to`, when the first copy arrived and how many
  did: `{"<in_reply_to>": [t, n], ...}`. `t` is time.monotonic(), CLOCK_MONOTONIC on Linux,
  the clock the benchmark stamps acknowledgements with: one clock for the whole machine, so
  two processes' stamps can be subtracted (and, unlike time.time(), it never jumps).
- `GET /log` (with `--keep-requests`) answers what identifies each reply: the `webhook-id`
  header, the body's `message_id`, `in_reply_to` and `role`, and the wall-clock time, so that
  `make scale` can tell a repeat of the same reply (same key) from a second reply to the same
  message (a different key: a bug).
- `POST /reset` starts over.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

DEFAULT_AUTH_HEADER = "x-chat_auth_token"
MAX_BODY_BYTES = 8 * 1024 * 1024


@dataclass
class ReceivedRequest:
    path: str
    # Names in lower case, exactly as sent otherwise (underscores included).
    headers: dict[str, str]
    body: bytes
    # When it arrived (time.monotonic(): CLOCK_MONOTONIC on Linux), before any scripted delay.
    at: float = field(default_factory=time.monotonic)
    wall_at: float = field(default_factory=time.time)

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


class Tally:
    """What arrived on one path, counted as it arrives."""

    def __init__(self) -> None:
        self.posts = 0
        self.bad_json = 0
        self.missing_auth = 0
        self.bad_webhook_id = 0
        # in_reply_to -> how many replies answered it: >1 is a duplicated reply.
        self.replies: Counter[str] = Counter()
        # in_reply_to -> when its first reply arrived.
        self.first_at: dict[str, float] = {}


class ChannelReceiver:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        keep_requests: bool = True,
        hang_s: float | None = None,
        auth_header: str = DEFAULT_AUTH_HEADER,
    ) -> None:
        self.requests: list[ReceivedRequest] = []
        self.script: deque[Reply] = deque()
        self.default = Reply()
        # How typing events are answered.
        self.typing = Reply()
        self.keep_requests = keep_requests
        self.hang_s = hang_s
        self.auth_header = auth_header
        # One tally per URL path, so that interleaved runs post to channels with different
        # paths and are counted apart.
        self.tallies: dict[str, Tally] = {}
        self._lock = threading.Lock()
        self.host = host
        # Bound at once, so that the port is known (and taken) before the server starts.
        self.sock = socket.create_server((host, port), reuse_port=False)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    # --- Running -------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_get("/stats", self._stats)
        app.router.add_get("/receipts", self._receipts)
        app.router.add_get("/log", self._log)
        app.router.add_post("/reset", self._reset)
        app.router.add_post("/{tail:.*}", self._take)
        return app

    def start(self) -> ChannelReceiver:
        """Serves from a thread of this process; returns once it is listening."""
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._serve_start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="channel-receiver", daemon=True)
        self._thread.start()
        ready.wait()
        return self

    def stop(self) -> None:
        """Stops listening and closes every connection, like a channel that went down."""
        if self._loop is None or self._runner is None:
            self.sock.close()
            return
        runner, self._runner = self._runner, None
        asyncio.run_coroutine_threadsafe(self._serve_stop(runner), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join()
        self._loop.close()
        self.sock.close()

    def serve_forever(self) -> None:
        """Serves from this thread until the process is stopped."""
        web.run_app(self.app(), sock=self.sock, print=None, access_log=None)

    async def _serve_start(self) -> None:
        # A handler still waiting out a scripted delay does not hold up a stop.
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.SockSite(self._runner, self.sock).start()

    @staticmethod
    async def _serve_stop(runner: web.AppRunner) -> None:
        await runner.cleanup()
        # Handlers still waiting out a scripted delay end here, not when the loop is closed.
        pending = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # --- For tests -------------------------------------------------------------------------

    def then(self, *replies: Reply) -> ChannelReceiver:
        with self._lock:
            self.script.extend(replies)
        return self

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.script.clear()
            self.default = Reply()
            self.typing = Reply()
            self.tallies.clear()

    def replies(self) -> list[ReceivedRequest]:
        """What was received, typing events left out."""
        with self._lock:
            return [r for r in self.requests if not _is_typing(r.body)]

    def typing_events(self) -> list[ReceivedRequest]:
        with self._lock:
            return [r for r in self.requests if _is_typing(r.body)]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedRequest]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.requests) < count:
            time.sleep(0.02)
        return list(self.requests)

    # --- Handlers --------------------------------------------------------------------------

    async def _take(self, request: web.Request) -> web.Response:
        at = time.monotonic()
        try:
            body = await request.read()
        except Exception:  # noqa: BLE001 - the sender died mid-request
            # As with any HTTP server, a request whose body never arrived whole reaches no one.
            raise web.HTTPBadRequest() from None
        headers = request.headers  # case-insensitive
        try:
            data = json.loads(body)
            key, message_id = str(data.get("in_reply_to") or data.get("message_id")), str(data.get("message_id"))
        except (ValueError, AttributeError):
            data = None
        typing = isinstance(data, dict) and data.get("type") == "typing"
        with self._lock:
            if self.keep_requests:
                # Names in lower case, as sent otherwise (underscores included).
                kept = {name.lower(): value for name, value in headers.items()}
                self.requests.append(ReceivedRequest(request.path, kept, body, at=at))
            if typing:
                reply = self.typing
            else:
                tally = self.tallies.setdefault(request.path, Tally())
                tally.posts += 1
                if not headers.get(self.auth_header, "").startswith("Bearer "):
                    tally.missing_auth += 1
                if data is None:
                    tally.bad_json += 1
                else:
                    if headers.get("webhook-id") != message_id:
                        tally.bad_webhook_id += 1
                    tally.replies[key] += 1
                    tally.first_at.setdefault(key, at)
                    reply = self.script.popleft() if self.script else self.default
        if data is None:
            return web.json_response({"ok": False}, status=400)
        return await self._answer(reply, request)

    async def _answer(self, reply: Reply, request: web.Request) -> web.Response:
        delay_s = reply.delay_s
        if self.hang_s is not None and "/hang/" in request.path:
            delay_s = max(delay_s, self.hang_s)
        if delay_s:
            await asyncio.sleep(delay_s)
        if reply.release is not None:
            await asyncio.get_running_loop().run_in_executor(None, reply.release.wait, reply.hold_s)
        return web.Response(
            status=reply.status, body=reply.body, headers={**reply.headers, "Content-Type": "application/json"}
        )

    def _selected(self, request: web.Request) -> list[Tally]:
        wanted = request.query.get("path")
        with self._lock:
            return [tally for path, tally in self.tallies.items() if wanted is None or path == wanted]

    async def _stats(self, request: web.Request) -> web.Response:
        chosen = self._selected(request)
        return web.json_response(
            {
                "posts": sum(t.posts for t in chosen),
                "unique_replies": sum(len(t.replies) for t in chosen),
                "duplicated": sum(1 for t in chosen for n in t.replies.values() if n > 1),
                "bad_json": sum(t.bad_json for t in chosen),
                "missing_auth": sum(t.missing_auth for t in chosen),
                "bad_webhook_id": sum(t.bad_webhook_id for t in chosen),
            }
        )

    async def _receipts(self, request: web.Request) -> web.Response:
        out: dict[str, list[float]] = {}
        for tally in self._selected(request):
            for key, n in tally.replies.items():
                out[key] = [tally.first_at[key], n]
        return web.json_response(out)

    async def _log(self, request: web.Request) -> web.Response:
        with self._lock:
            kept = list(self.requests)
        return web.json_response([_log_entry(received) for received in kept])

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})


def _is_typing(body: bytes) -> bool:
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("type") == "typing"


def _log_entry(received: ReceivedRequest) -> dict[str, Any]:
    try:
        body = json.loads(received.body)
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    return {
        "webhook_id": received.headers.get("webhook-id", ""),
        "message_id": body.get("message_id", ""),
        "in_reply_to": body.get("in_reply_to", ""),
        "role": body.get("role", ""),
        "at": received.wall_at,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--auth-header", default=DEFAULT_AUTH_HEADER)
    parser.add_argument("--hang-s", type=float, default=30.0, help="how long /hang/ paths take to answer")
    parser.add_argument("--keep-requests", action="store_true", help="keep every request, for GET /log")
    args = parser.parse_args()
    receiver = ChannelReceiver(
        host=args.host,
        port=args.port,
        keep_requests=args.keep_requests,
        hang_s=args.hang_s,
        auth_header=args.auth_header,
    )
    receiver.serve_forever()


if __name__ == "__main__":
    main()
