"""The channel of `make scale`: takes every reply POST, answers 200 at once, and keeps what
identifies each one (the `webhook-id` header, the body's `message_id` and `in_reply_to`), so
that the run can tell a repeat of the same reply (same key) from a second reply to the same
message (a different key: a bug).

`GET /log` answers the list; run as `python -m scale.receiver --host H --port P`.
"""

from __future__ import annotations

import argparse
import json
import time

from aiohttp import web


async def take(request: web.Request) -> web.Response:
    try:
        body = json.loads(await request.read())
    except ValueError:
        body = {}
    request.app["log"].append(
        {
            "webhook_id": request.headers.get("webhook-id", ""),
            "message_id": body.get("message_id", ""),
            "in_reply_to": body.get("in_reply_to", ""),
            "role": body.get("role", ""),
            "at": time.time(),
        }
    )
    return web.json_response({"ok": True})


async def log(request: web.Request) -> web.Response:
    return web.json_response(request.app["log"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    app = web.Application(client_max_size=1024 * 1024)
    app["log"] = []
    app.router.add_get("/log", log)
    app.router.add_post("/{tail:.*}", take)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
