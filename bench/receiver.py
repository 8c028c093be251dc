"""The benchmark's channel: a real HTTP server on 127.0.0.1, in its own process so that it
does not take the load generator's CPU, counting the replies it receives.

`GET /stats` answers what it counted; `POST /reset` starts over. Run as
`python -m bench.receiver --port P`.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

from aiohttp import web


class Counts:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.posts = 0
        self.bad_json = 0
        self.missing_auth = 0
        # in_reply_to -> how many replies answered it: >1 is a duplicated reply.
        self.replies: Counter[str] = Counter()


def make_app(*, auth_header: str) -> web.Application:
    # One set of counts per URL path, so that interleaved runs (load and floor) post to
    # channels with different paths and are counted apart.
    counts: dict[str, Counts] = {}

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        mine = counts.setdefault(request.path, Counts())
        mine.posts += 1
        if not request.headers.get(auth_header, "").startswith("Bearer "):
            mine.missing_auth += 1
        try:
            data = json.loads(body)
            key = str(data.get("in_reply_to") or data.get("message_id"))
        except (ValueError, AttributeError):
            mine.bad_json += 1
            return web.json_response({"ok": False}, status=400)
        mine.replies[key] += 1
        return web.json_response({"ok": True})

    async def stats(request: web.Request) -> web.Response:
        wanted = request.query.get("path")
        selected = [c for path, c in counts.items() if wanted is None or path == wanted]
        return web.json_response(
            {
                "posts": sum(c.posts for c in selected),
                "unique_replies": sum(len(c.replies) for c in selected),
                "duplicated": sum(1 for c in selected for n in c.replies.values() if n > 1),
                "bad_json": sum(c.bad_json for c in selected),
                "missing_auth": sum(c.missing_auth for c in selected),
            }
        )

    async def reset(request: web.Request) -> web.Response:
        counts.clear()
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=2 * 1024 * 1024)
    app.router.add_post("/hook", hook)
    app.router.add_post("/hook/{tail:.*}", hook)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--auth-header", default="x-chat_auth_token")
    args = parser.parse_args()
    web.run_app(make_app(auth_header=args.auth_header), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
