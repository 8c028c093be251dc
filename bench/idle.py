"""The stack with nothing to do: what an idle worker costs the database, and how soon the
first message after a quiet spell is answered (the worker has backed off to its idle poll by
then, so it is the wake-up, or that poll, that finds the message)."""

from __future__ import annotations

import statistics
import time
from typing import Any

import requests

from bench.dbstats import DbCounters, DbDelta
from bench.stack import Stack
from bench.stats import clock
from bench.workload import WEBHOOK_PATH, message_body

# Longer than the worker's fast spell after work (worker.loop.HOT_S) and its backing off to
# WORKER_IDLE_POLL_MS: what follows is measured against a worker at its idle pace.
SETTLE_S = 5.0
PATH = "/hook/after-quiet"


def idle_cost(stack: Stack, counters: DbCounters, *, seconds: float) -> dict[str, Any]:
    """What the stack asks of the database with nothing to do, after SETTLE_S of quiet: the
    worker's look-ups and its housekeeping, and the database server's CPU as a share of one
    core (it runs on one)."""
    time.sleep(SETTLE_S)
    before = counters.snapshot()
    cpu = stack.cpu_seconds()
    started = time.monotonic()
    time.sleep(seconds)
    after = counters.snapshot()
    cpu_after = stack.cpu_seconds()
    elapsed = time.monotonic() - started
    delta = DbDelta()
    delta.add(before, after, counters.overhead)
    cpu_percent = {name: round((cpu_after[name] - cpu[name]) / elapsed * 100, 2) for name in cpu}
    return {
        "seconds": round(elapsed, 1),
        "settle_s": SETTLE_S,
        "ops_per_s": {f"{c}.{k}": round(n / elapsed, 2) for (c, k), (n, _) in sorted(delta.top.items()) if n},
        # The worker's look-ups for due work, plus its housekeeping's parked-dialogue look-up.
        "dialogue_finds_per_s": round(delta.count("dialogues", "find") / elapsed, 2),
        "cpu_percent": cpu_percent,
        "database_cpu_percent_of_core": cpu_percent["database"],
    }


def first_after_quiet(stack: Stack, *, times: int, quiet_s: float) -> dict[str, Any]:
    """`times` messages, each after `quiet_s` with nothing sent: from the webhook's 200 at the
    sender to the reply at the receiver (ack to receipt, one clock for both processes)."""
    bot_id, secret = stack.create_bot("bench after quiet")
    channel_id = stack.create_channel(bot_id=bot_id, name="after quiet", path=PATH)
    headers = {"x-chatbot_auth_token": f"Bearer {secret}"}
    latencies: list[float] = []
    missing = 0
    with requests.Session() as session:
        for index in range(times):
            time.sleep(quiet_s)
            body = message_body(chat_id=channel_id, index=index)
            response = session.post(stack.app_url + WEBHOOK_PATH, json=body, headers=headers, timeout=30)
            acked = clock()
            if response.status_code != 200:
                missing += 1
                continue
            deadline = time.monotonic() + 30
            receipt = None
            while receipt is None and time.monotonic() < deadline:
                receipt = stack.receiver_receipts(PATH).get(body["message_id"])
                if receipt is None:
                    time.sleep(0.05)
            if receipt is None:
                missing += 1
                continue
            latencies.append((receipt[0] - acked) * 1000)
    return {
        "times": times,
        "quiet_s": quiet_s,
        "ack_to_receipt_ms": [round(value, 1) for value in latencies],
        "median_ms": round(statistics.median(latencies), 1) if latencies else None,
        "max_ms": round(max(latencies), 1) if latencies else None,
        "missing": missing,
    }
