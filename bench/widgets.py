"""Widget scale (issue 24): 1,000 open web chat widgets, 100 of them sending a message every
10 s, against the stack as `make run` serves it (gunicorn for the widget's calls, the stream
process for its live updates, the worker with the mock LLM delayed by LLM_DELAY_MS).

Each widget is what the real one does: a session (`POST .../session`), one Server-Sent Events
connection to the stream, and for the senders `POST .../messages`. Reply-to-screen is the time
from a sender's POST to the bot's reply arriving on that widget's stream; beyond the LLM is that
less the LLM's delay. The threads and resident memory of the stream process and of gunicorn are
read from /proc with no widget open, then with all of them open, so what the open widgets cost
is measured, not assumed."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from bench.stack import ROOT, Stack, _wait_http
from devtools.embedded_mongo import free_port

ORIGIN = "http://shop.bench.example"
LLM_DELAY_MS = 2000


def _proc(pid: int) -> dict[str, int]:
    found = {"threads": 0, "rss_bytes": 0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                found["threads"] = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                found["rss_bytes"] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return found


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def footprint(stack: Stack, stream_pid: int) -> dict[str, Any]:
    """Threads and memory of the processes that serve widgets: the stream, gunicorn (master and
    workers)."""
    assert stack.gunicorn is not None
    gunicorn = [stack.gunicorn.pid, *_children(stack.gunicorn.pid)]
    g = [_proc(pid) for pid in gunicorn]
    s = _proc(stream_pid)
    return {
        "stream": {"threads": s["threads"], "rss_mb": round(s["rss_bytes"] / 2**20, 1)},
        "gunicorn": {
            "processes": len(gunicorn),
            "threads": sum(item["threads"] for item in g),
            "rss_mb": round(sum(item["rss_bytes"] for item in g) / 2**20, 1),
        },
    }


class Widget:
    def __init__(self, index: int) -> None:
        self.index = index
        self.token = ""
        self.sent_at: float | None = None
        self.latencies_ms: list[float] = []
        self.replies = 0
        self.connected = asyncio.Event()

    def reply_seen(self, at: float) -> None:
        self.replies += 1
        if self.sent_at is not None:
            self.latencies_ms.append((at - self.sent_at) * 1000)
            self.sent_at = None


async def _session(http: aiohttp.ClientSession, app: str, path: str, widget: Widget) -> None:
    async with http.post(f"{app}{path}/session", json={}, headers={"Origin": ORIGIN}) as response:
        response.raise_for_status()
        widget.token = (await response.json())["visitor"]


async def _listen(http: aiohttp.ClientSession, stream: str, path: str, widget: Widget, stop: asyncio.Event) -> None:
    url = f"{stream}{path}/stream"
    async with http.get(url, params={"visitor": widget.token}, headers={"Origin": ORIGIN}) as response:
        response.raise_for_status()
        widget.connected.set()
        async for raw in response.content:
            if stop.is_set():
                return
            line = raw.decode().strip()
            if not line.startswith("data:"):
                continue
            event = json.loads(line[5:])
            if event.get("type") == "message" and event.get("role") == "assistant":
                widget.reply_seen(time.monotonic())


async def _send_loop(
    http: aiohttp.ClientSession, app: str, path: str, widget: Widget, *, offset_s: float, every_s: float,
    until: float, sent: list[int], failed: list[int],
) -> None:  # fmt: skip
    await asyncio.sleep(offset_s)
    while time.monotonic() < until:
        started = time.monotonic()
        widget.sent_at = started
        body = {"text": f"Hello from widget {widget.index}", "client_id": str(uuid.uuid4())}
        headers = {"Origin": ORIGIN, "X-Webchat-Visitor": widget.token}
        async with http.post(f"{app}{path}/messages", json=body, headers=headers) as response:
            if response.status == 201:
                sent[0] += 1
            else:
                failed[0] += 1
                widget.sent_at = None
        await asyncio.sleep(max(0.0, started + every_s - time.monotonic()))


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


async def _run(
    stack: Stack, stream_url: str, channel_id: str, *, widgets_n: int, senders: int, every_s: float,
    duration_s: float, stream_pid: int,
) -> dict[str, Any]:  # fmt: skip
    path = f"/channels/webchat/{channel_id}"
    widgets = [Widget(i) for i in range(widgets_n)]
    stop = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    result: dict[str, Any] = {"before": footprint(stack, stream_pid)}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        gate = asyncio.Semaphore(32)

        async def open_session(widget: Widget) -> None:
            async with gate:
                await _session(http, stack.app_url, path, widget)

        started = time.monotonic()
        await asyncio.gather(*(open_session(w) for w in widgets))
        listeners = [asyncio.create_task(_listen(http, stream_url, path, w, stop)) for w in widgets]
        await asyncio.wait_for(asyncio.gather(*(w.connected.wait() for w in widgets)), timeout=120)
        result["opened_in_s"] = round(time.monotonic() - started, 1)
        await asyncio.sleep(2)
        result["open"] = footprint(stack, stream_pid)
        sent, failed = [0], [0]
        until = time.monotonic() + duration_s
        chosen = widgets[:senders]
        await asyncio.gather(
            *(
                _send_loop(
                    http,
                    stack.app_url,
                    path,
                    w,
                    offset_s=every_s * i / senders,
                    every_s=every_s,
                    until=until,
                    sent=sent,
                    failed=failed,
                )  # fmt: skip
                for i, w in enumerate(chosen)
            )
        )
        # The last replies: up to the LLM's delay and some more.
        await asyncio.sleep(LLM_DELAY_MS / 1000 + 5)
        result["during"] = footprint(stack, stream_pid)
        stop.set()
        for task in listeners:
            task.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
    latencies = [ms for w in chosen for ms in w.latencies_ms]
    answered = sum(len(w.latencies_ms) for w in chosen)
    result.update(
        widgets=widgets_n,
        senders=senders,
        every_s=every_s,
        duration_s=duration_s,
        llm_delay_ms=LLM_DELAY_MS,
        messages_sent=sent[0],
        messages_refused=failed[0],
        replies_on_screen=answered,
        replies_seen_by_other_widgets=sum(w.replies for w in widgets[senders:]),
        reply_to_screen_ms={"p50": _percentile(latencies, 0.5), "p99": _percentile(latencies, 0.99),
                            "max": round(max(latencies), 1) if latencies else None,
                            "mean": round(statistics.fmean(latencies), 1) if latencies else None},
        beyond_llm_ms={"p50": None if not latencies else round(_percentile(latencies, 0.5) - LLM_DELAY_MS, 1),  # type: ignore[operator]
                       "p99": None if not latencies else round(_percentile(latencies, 0.99) - LLM_DELAY_MS, 1)},  # type: ignore[operator]
    )  # fmt: skip
    return result


def run_widgets(
    stack: Stack, *, widgets_n: int = 1000, senders: int = 100, every_s: float = 10.0, duration_s: float = 60.0,
    say: Any = print,
) -> dict[str, Any]:  # fmt: skip
    stack.restart_worker({"LLM_MOCK_DELAY_MS": str(LLM_DELAY_MS)})
    bot_id, _secret = stack.create_bot("Widget bench bot")
    channel = stack.api(
        "POST",
        "/api/channels/kinds/webchat/",
        json={"name": "Widget bench", "chat_bot_id": bot_id, "allowed_origins": [ORIGIN]},
    )
    port = free_port()
    log = open(stack.out_dir / "webchat-stream.log", "wb")  # noqa: SIM115
    stream = subprocess.Popen(
        [sys.executable, "-m", "channels_app.kinds.webchat.stream", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=stack.env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    stream_url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(stream_url + "/healthz", timeout=30, process=stream, what="the web chat stream")
        plan = f"{widgets_n} widgets, {senders} sending every {every_s:g} s for {duration_s:g} s"
        say(f"    {plan}, LLM {LLM_DELAY_MS} ms")
        result = asyncio.run(
            _run(stack, stream_url, str(channel["id"]), widgets_n=widgets_n, senders=senders, every_s=every_s,
                 duration_s=duration_s, stream_pid=stream.pid)
        )  # fmt: skip
    finally:
        stream.terminate()
        try:
            stream.wait(timeout=10)
        except subprocess.TimeoutExpired:
            stream.kill()
        stack.restart_worker()
    result["cpus"] = os.cpu_count()
    return result
