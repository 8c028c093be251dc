"""An OpenAI-compatible chat-completions server for the benchmark's LLM stage: it answers
`POST /v1/chat/completions` after a set latency, holds thousands of requests at once (asyncio,
one process), and can enforce a provider's limits as a real one does.

    python -m bench.fake_llm --port P

- `POST /v1/chat/completions`: a completion after `latency_ms`, with `usage` (prompt tokens
  estimated from the messages' length, as a tokenizer would roughly count them). Over a limit
  it answers 429 at once, with OpenAI's error body and headers: over `max_concurrent` requests
  in flight (`Retry-After: 1`), or over `requests_per_minute` (`Retry-After` and
  `retry-after-ms` until the next request is allowed). Every answer carries
  `x-ratelimit-limit-requests`, `x-ratelimit-remaining-requests` and
  `x-ratelimit-reset-requests` while a per-minute limit is set, as OpenAI's do.
- `POST /config` `{"latency_ms", "max_concurrent", "requests_per_minute", "burst_s"}` sets the
  behaviour (null: no limit) and starts the counters over.
- `GET /stats`: requests, answers by status, 429s by cause, calls in flight and their peak,
  and arrivals and admitted calls per second since the last `/config` (CLOCK_MONOTONIC).

The per-minute limit is a token bucket refilled at a sixtieth of it a second, holding at most
`burst_s` seconds' worth (OpenAI enforces its limits over shorter periods than a minute, so a
minute's worth never goes through at once). The default, 6 s, is a tenth of the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from typing import Any

from aiohttp import web

DEFAULT_BURST_S = 6.0


class Limits:
    def __init__(self) -> None:
        self.latency_s = 0.0
        self.max_concurrent: int | None = None
        self.rpm: int | None = None
        self.burst_s = DEFAULT_BURST_S
        self.reset()

    def configure(self, data: dict[str, Any]) -> None:
        self.latency_s = float(data.get("latency_ms") or 0) / 1000
        self.max_concurrent = data.get("max_concurrent") or None
        self.rpm = data.get("requests_per_minute") or None
        self.burst_s = float(data.get("burst_s") or DEFAULT_BURST_S)
        self.reset()

    def reset(self) -> None:
        self.started = time.monotonic()
        self.capacity = (self.rpm or 0) * self.burst_s / 60
        self.tokens = self.capacity
        self.refilled_at = self.started
        self.in_flight = 0
        self.peak_in_flight = 0
        self.requests = 0
        self.statuses: dict[int, int] = {}
        self.rejected = {"concurrency": 0, "rate": 0}
        self.arrivals: dict[int, int] = {}  # second since the reset -> requests that arrived
        self.admitted: dict[int, int] = {}  # second since the reset -> requests answered 200
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def _refill(self, now: float) -> None:
        if self.rpm:
            self.tokens = min(self.capacity, self.tokens + (now - self.refilled_at) * self.rpm / 60)
        self.refilled_at = now

    def rate_headers(self, now: float) -> dict[str, str]:
        if not self.rpm:
            return {}
        # Until the bucket is full again: OpenAI's "time until the limit resets to its initial state".
        reset_s = (self.capacity - self.tokens) * 60 / self.rpm
        return {
            "x-ratelimit-limit-requests": str(self.rpm),
            "x-ratelimit-remaining-requests": str(max(0, math.floor(self.tokens))),
            "x-ratelimit-reset-requests": f"{max(reset_s, 0.001):.3f}s",
        }

    def stats(self) -> dict[str, Any]:
        return {
            "latency_ms": round(self.latency_s * 1000),
            "max_concurrent": self.max_concurrent,
            "requests_per_minute": self.rpm,
            "burst_s": self.burst_s,
            "requests": self.requests,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "rejected": self.rejected,
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "arrivals_per_s": _series(self.arrivals),
            "admitted_per_s": _series(self.admitted),
            "first_at": self.first_at,
            "last_at": self.last_at,
            "started_at": self.started,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


def _series(counts: dict[int, int]) -> list[int]:
    return [counts.get(i, 0) for i in range(max(counts) + 1)] if counts else []


def _error(status: int, message: str, code: str, headers: dict[str, str], limits: Limits) -> web.Response:
    limits.statuses[status] = limits.statuses.get(status, 0) + 1
    body = {"error": {"message": message, "type": "requests", "param": None, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def _count_tokens(messages: Any) -> int:
    text = "".join(str(m.get("content") or "") for m in messages if isinstance(m, dict)) if messages else ""
    return 4 * len(messages or []) + len(text) // 4 + 1


async def completions(request: web.Request) -> web.Response:
    limits: Limits = request.app["limits"]
    now = time.monotonic()
    second = int(now - limits.started)
    limits.requests += 1
    limits.arrivals[second] = limits.arrivals.get(second, 0) + 1
    limits.first_at = limits.first_at or now
    limits.last_at = now
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error(400, "We could not parse the JSON body of your request.", "invalid_json", {}, limits)
    if limits.max_concurrent is not None and limits.in_flight >= limits.max_concurrent:
        limits.rejected["concurrency"] += 1
        headers = {"Retry-After": "1", **limits.rate_headers(now)}
        return _error(429, "Too many concurrent requests.", "rate_limit_exceeded", headers, limits)
    limits._refill(now)
    if limits.rpm:
        if limits.tokens < 1:
            limits.rejected["rate"] += 1
            wait_s = (1 - limits.tokens) * 60 / limits.rpm
            headers = {
                "Retry-After": str(max(1, math.ceil(wait_s))),
                "retry-after-ms": str(max(1, round(wait_s * 1000))),
                **limits.rate_headers(now),
            }
            return _error(429, f"Rate limit reached for requests: limit {limits.rpm}/min.", "rate_limit_exceeded",
                          headers, limits)  # fmt: skip
        limits.tokens -= 1
    headers = limits.rate_headers(now)
    limits.admitted[second] = limits.admitted.get(second, 0) + 1
    limits.in_flight += 1
    limits.peak_in_flight = max(limits.peak_in_flight, limits.in_flight)
    try:
        await asyncio.sleep(limits.latency_s)
    finally:
        limits.in_flight -= 1
    messages = body.get("messages") if isinstance(body, dict) else None
    prompt_tokens = _count_tokens(messages)
    last = messages[-1].get("content", "") if messages and isinstance(messages[-1], dict) else ""
    text = f"Fake reply to: {str(last)[:200]}"
    completion_tokens = len(text) // 4 + 1
    limits.prompt_tokens += prompt_tokens
    limits.completion_tokens += completion_tokens
    limits.statuses[200] = limits.statuses.get(200, 0) + 1
    return web.json_response(
        {
            "id": f"chatcmpl-{limits.requests}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or "fake",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop",
                 "logprobs": None}
            ],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        },
        headers=headers,
    )  # fmt: skip


async def configure(request: web.Request) -> web.Response:
    limits: Limits = request.app["limits"]
    limits.configure(await request.json())
    return web.json_response(limits.stats())


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app["limits"].stats())


def make_app() -> web.Application:
    app = web.Application(client_max_size=8 * 1024 * 1024)
    app["limits"] = Limits()
    app.router.add_post("/v1/chat/completions", completions)
    app.router.add_post("/config", configure)
    app.router.add_get("/stats", stats)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    # A deep accept queue: a worker opens hundreds of connections at the same moment.
    web.run_app(make_app(), host=args.host, port=args.port, backlog=4096, access_log=None, print=None)


if __name__ == "__main__":
    main()
