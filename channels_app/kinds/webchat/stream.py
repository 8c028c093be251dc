"""The web chat's live stream: `python -m channels_app.kinds.webchat.stream --port N`.

One asyncio process (aiohttp) holds every open widget's Server-Sent Events connection as a
coroutine, not a thread: memory grows with connections, threads do not. It polls
`webchat_events` once for the whole process every POLL_S (events newer than the last one seen,
less a small overlap for clocks of several app hosts; repeats dropped by `_id`) and pushes each
event to the open connections of its conversation. A connection is accepted only with a visitor
token of its channel (`visitors.py`), from an allowed origin. A comment every HEARTBEAT_S keeps
proxies from closing an idle connection.

`GET /channels/webchat/<channel id>/stream?visitor=<token>`; `GET /healthz`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web

logger = logging.getLogger("webchat.stream")

POLL_S = 0.25
HEARTBEAT_S = 15.0
# Events inserted by another host whose clock is behind ours by up to this much are still seen.
OVERLAP = timedelta(seconds=2)
POLL_BATCH = 2000
# Events waiting for one slow connection; beyond it the connection is closed (the widget
# reconnects and reads the history).
QUEUE_MAX = 200
CHANNEL_CACHE_S = 30.0
STREAM_PATH = "/channels/webchat/{channel_id}/stream"


class Hub:
    """The open connections by conversation, and the one poller that feeds them."""

    def __init__(self, database: Any) -> None:
        from channels_app.kinds.webchat.events import EVENTS_COLLECTION
        from channels_app.models import Channel

        self.events = database[EVENTS_COLLECTION]
        self.channels = database[Channel._meta.db_table]
        self.connections: dict[tuple[str, str], set[asyncio.Queue[bytes | None]]] = defaultdict(set)
        self.seen: dict[str, datetime] = {}
        self.last = datetime.now(UTC)
        self._channel_cache: dict[str, tuple[float, dict[str, Any] | None]] = {}

    @property
    def open_connections(self) -> int:
        return sum(len(queues) for queues in self.connections.values())

    def add(self, key: tuple[str, str], queue: asyncio.Queue[bytes | None]) -> None:
        self.connections[key].add(queue)

    def remove(self, key: tuple[str, str], queue: asyncio.Queue[bytes | None]) -> None:
        queues = self.connections.get(key)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self.connections[key]

    async def channel(self, channel_id: str) -> dict[str, Any] | None:
        """The active web chat channel's document (its options), cached for CHANNEL_CACHE_S."""
        from bson import ObjectId
        from bson.errors import InvalidId

        now = time.monotonic()
        cached = self._channel_cache.get(channel_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            pk = ObjectId(channel_id)
        except (InvalidId, TypeError):
            return None
        document = await self.channels.find_one({"_id": pk}, {"kind": 1, "is_active": 1, "kind_options": 1})
        if document is None or document.get("kind") != "webchat" or not document.get("is_active"):
            document = None
        if len(self._channel_cache) > 10_000:
            self._channel_cache.clear()
        self._channel_cache[channel_id] = (now + CHANNEL_CACHE_S, document)
        return document

    async def poll_once(self) -> int:
        """Pushes the events not seen yet; returns how many."""
        from channels_app.kinds.webchat.events import event_public

        pushed = 0
        cursor = self.events.find({"at": {"$gt": self.last - OVERLAP}}).sort("at", 1).limit(POLL_BATCH)
        async for document in cursor:
            key = str(document["_id"])
            at = document["at"]
            if key in self.seen:
                continue
            self.seen[key] = at
            if at > self.last:
                self.last = at
            queues = self.connections.get((str(document.get("channel_id")), str(document.get("chat_id"))))
            if not queues:
                continue
            data = json.dumps(event_public(document), ensure_ascii=False, separators=(",", ":"))
            frame = f"id: {key}\ndata: {data}\n\n".encode()
            for queue in list(queues):
                try:
                    queue.put_nowait(frame)
                except asyncio.QueueFull:
                    self._close(queue)
            pushed += 1
        horizon = self.last - OVERLAP
        for key in [k for k, at in self.seen.items() if at < horizon]:
            del self.seen[key]
        return pushed

    @staticmethod
    def _close(queue: asyncio.Queue[bytes | None]) -> None:
        """A connection that cannot keep up: emptied and told to close."""
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(None)

    async def poll_forever(self) -> None:
        from pymongo.errors import PyMongoError

        while True:
            try:
                await self.poll_once()
            except PyMongoError as exc:
                logger.warning("webchat stream: polling the events failed: %s", type(exc).__name__)
                await asyncio.sleep(1)
            await asyncio.sleep(POLL_S)


def _json(status: int, detail: str, headers: dict[str, str]) -> web.Response:
    from aiohttp import web

    return web.json_response({"detail": detail}, status=status, headers=headers)


def make_app(hub: Hub) -> web.Application:
    from aiohttp import web

    from channels_app.kinds.webchat.options import channel_origins
    from channels_app.kinds.webchat.visitors import visitor_from_token

    async def stream(request: web.Request) -> web.StreamResponse:
        channel_id = request.match_info["channel_id"]
        headers = {"Vary": "Origin", "Cache-Control": "no-store"}
        channel = await hub.channel(channel_id)
        if channel is None:
            return _json(404, "Chat not found", headers)
        visitor = visitor_from_token(channel_id, request.query.get("visitor"))
        origin = request.headers.get("Origin")
        if origin is not None:
            allowed = set(channel_origins(channel.get("kind_options")))
            if visitor is not None and visitor.try_origin:
                allowed.add(visitor.try_origin)
            if origin.lower() not in allowed:
                return _json(403, "This site is not allowed to use this chat", headers)
            headers["Access-Control-Allow-Origin"] = origin
        if visitor is None:
            return _json(401, "A valid visitor token for this chat is required", headers)
        response = web.StreamResponse(
            headers={
                **headers,
                "Content-Type": "text/event-stream; charset=utf-8",
                # nginx: pass every event on at once.
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=QUEUE_MAX)
        key = (channel_id, visitor.chat_id)
        hub.add(key, queue)
        try:
            await response.write(b"retry: 3000\n: connected\n\n")
            while True:
                try:
                    frame = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                except TimeoutError:
                    await response.write(b": ping\n\n")
                    continue
                if frame is None:
                    break
                await response.write(frame)
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            hub.remove(key, queue)
        return response

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "connections": hub.open_connections})

    app = web.Application()
    app.router.add_get(STREAM_PATH, stream)
    app.router.add_get("/healthz", healthz)
    return app


async def serve(host: str, port: int) -> None:
    from aiohttp import web
    from django.conf import settings
    from pymongo import AsyncMongoClient
    from pymongo.errors import PyMongoError

    database_settings: dict[str, Any] = settings.DATABASES["default"]
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        database_settings["HOST"], tz_aware=True, appname="webchat-stream"
    )
    database = client[database_settings["NAME"]]
    from channels_app.kinds.webchat.events import AT_INDEX, EVENTS_COLLECTION, TTL_INDEX

    events = database[EVENTS_COLLECTION]
    try:
        await events.create_index([("at", 1)], name=AT_INDEX)
        await events.create_index("expires_at", name=TTL_INDEX, expireAfterSeconds=0)
    except PyMongoError as exc:  # the stream works without them, more slowly
        logger.warning("webchat stream: could not create the events' indexes: %s", type(exc).__name__)
    hub = Hub(database)
    runner = web.AppRunner(make_app(hub), access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=2048)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    print(f"webchat stream: listening on http://{host}:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    poller = asyncio.create_task(hub.poll_forever())
    try:
        await stop.wait()
    finally:
        poller.cancel()
        await runner.cleanup()
        await client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m channels_app.kinds.webchat.stream", description=__doc__)
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")  # noqa: S104
    parser.add_argument("--port", type=int, default=None, help="port (default WEBCHAT_STREAM_PORT; 0: any free)")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.conf import settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    port = settings.WEBCHAT_STREAM_PORT if args.port is None else args.port
    try:
        asyncio.run(serve(args.host, port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
