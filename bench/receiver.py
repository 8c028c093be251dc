"""The benchmark's channel: a real HTTP server on 127.0.0.1, in its own process so that it
does not take the load generator's CPU, counting the replies it receives and noting when
each arrived.

- `POST /hook/...` takes a reply. Paths containing `/hang/` answer only after `--hang-s`
  seconds (30 by default): a channel that hangs, for the slow-neighbour scenario.
- `GET /stats?path=P` answers what it counted (for one path, or all).
- `GET /receipts?path=P` answers, per `in_reply_to`, when the first copy arrived and how many
  did: `{"<in_reply_to>": [t, n], ...}`. `t` is CLOCK_MONOTONIC in seconds, the clock the
  load generator stamps acknowledgements with: on Linux it is one clock for the whole
  machine, so the two processes' stamps can be subtracted (and, unlike time.time(), it
  never jumps when the wall clock is set).
- `POST /reset` starts over.

Run as `python -m bench.receiver --port P`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter

from aiohttp import web

from bench.stats import clock


class Counts:
    def __init__(self) -> None:
        self.posts = 0
        self.bad_json = 0
        self.missing_auth = 0
        # Posts whose `webhook-id` header is not the body's message_id (the idempotency key).
        self.bad_webhook_id = 0
        # in_reply_to -> how many replies answered it: >1 is a duplicated reply.
        self.replies: Counter[str] = Counter()
        # in_reply_to -> when its first reply arrived.
        self.first_at: dict[str, float] = {}


def make_app(*, auth_header: str, hang_s: float) -> web.Application:
    # One set of counts per URL path, so that interleaved runs (load and floor) post to
    # channels with different paths and are counted apart.
    counts: dict[str, Counts] = {}

    async def hook(request: web.Request) -> web.Response:
        at = clock()
        body = await request.read()
        mine = counts.setdefault(request.path, Counts())
        mine.posts += 1
        if not request.headers.get(auth_header, "").startswith("Bearer "):
            mine.missing_auth += 1
        try:
            data = json.loads(body)
            key = str(data.get("in_reply_to") or data.get("message_id"))
            message_id = str(data.get("message_id"))
        except (ValueError, AttributeError):
            mine.bad_json += 1
            return web.json_response({"ok": False}, status=400)
        if request.headers.get("webhook-id") != message_id:
            mine.bad_webhook_id += 1
        mine.replies[key] += 1
        mine.first_at.setdefault(key, at)
        if "/hang/" in request.path:
            await asyncio.sleep(hang_s)
        return web.json_response({"ok": True})

    def selected(request: web.Request) -> list[Counts]:
        wanted = request.query.get("path")
        return [c for path, c in counts.items() if wanted is None or path == wanted]

    async def stats(request: web.Request) -> web.Response:
        chosen = selected(request)
        return web.json_response(
            {
                "posts": sum(c.posts for c in chosen),
                "unique_replies": sum(len(c.replies) for c in chosen),
                "duplicated": sum(1 for c in chosen for n in c.replies.values() if n > 1),
                "bad_json": sum(c.bad_json for c in chosen),
                "missing_auth": sum(c.missing_auth for c in chosen),
                "bad_webhook_id": sum(c.bad_webhook_id for c in chosen),
            }
        )

    async def receipts(request: web.Request) -> web.Response:
        out: dict[str, list[float]] = {}
        for c in selected(request):
            for key, n in c.replies.items():
                out[key] = [c.first_at[key], n]
        return web.json_response(out)

    async def reset(request: web.Request) -> web.Response:
        counts.clear()
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=2 * 1024 * 1024)
    app.router.add_post("/hook", hook)
    app.router.add_post("/hook/{tail:.*}", hook)
    app.router.add_get("/stats", stats)
    app.router.add_get("/receipts", receipts)
    app.router.add_post("/reset", reset)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--auth-header", default="x-chat_auth_token")
    parser.add_argument("--hang-s", type=float, default=30.0, help="how long /hang/ paths take to answer")
    args = parser.parse_args()
    web.run_app(
        make_app(auth_header=args.auth_header, hang_s=args.hang_s),
        host="127.0.0.1",
        port=args.port,
        print=None,
        access_log=None,
    )


if __name__ == "__main__":
    main()
