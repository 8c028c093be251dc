"""The diagnostic phase: every database operation of the app and of the floor, counted by what
it is for, through the counting proxy (bench.wire). It runs last, because it restarts gunicorn
and the worker behind the proxy (same commands, same client options, the proxy's port).

Three windows: the stack idle (what the worker asks for with nothing to do), the app under the
C=16 load, and the floor at its fastest thread count under the same number of messages.
"""

from __future__ import annotations

import time
from typing import Any

from pymongo import MongoClient

from bench.dbstats import DbCounters
from bench.stack import DB_NAME, Stack
from bench.wire import WireProxy, counts_delta
from bench.workload import FloorRun, LoadRun, warm_up
from devtools.embedded_mongo import url_for

IDLE_S = 3.0


def diagnose(
    stack: Stack, counters: DbCounters, *, messages: int, channels: int, concurrency: int, floor_threads: int
) -> dict[str, Any]:
    proxy = WireProxy(target_port=stack.mongo.port, names=["gunicorn", "worker", "floor ingest", "floor worker"])
    proxy.start()
    floor_client: MongoClient | None = None
    try:
        stack.restart_app(gunicorn_mongo_url=url_for(proxy.ports["gunicorn"], app=True),
                          worker_mongo_url=url_for(proxy.ports["worker"], app=True))  # fmt: skip
        warm_up(stack, messages=20)
        app = LoadRun(stack, counters, channels=channels, concurrency=concurrency, name=f"diagnose-c{concurrency}")
        time.sleep(0.5)
        before_idle = proxy.snapshot()
        time.sleep(IDLE_S)
        after_idle = proxy.snapshot()
        app.segment(messages)
        after_app = proxy.snapshot()
        floor_client = MongoClient(url_for(proxy.ports["floor ingest"], app=True))
        floor = FloorRun(stack, counters, floor_client[DB_NAME], channels=channels, threads=floor_threads,
                         db_name=DB_NAME, name=f"diagnose-floor-t{floor_threads}")  # fmt: skip
        floor.worker_url = url_for(proxy.ports["floor worker"], app=True)
        before_floor = proxy.snapshot()
        floor.segment(messages)
        after_floor = proxy.stop()
    finally:
        if floor_client is not None:
            floor_client.close()
        if proxy.process and proxy.process.poll() is None:
            proxy.process.kill()
    idle = counts_delta(before_idle, after_idle)
    app_counts = counts_delta(after_idle, after_app)
    floor_counts = counts_delta(before_floor, after_floor)
    n = messages

    def per_message(counts: dict[str, int]) -> dict[str, float]:
        return {label: round(v / n, 3) for label, v in sorted(counts.items())}

    app_wall = app.measured_wall_s
    floor_wall = floor.measured_wall_s
    empty = "dialogue: due look-up -> empty"
    return {
        "messages": n,
        "concurrency": concurrency,
        "floor_threads": floor_threads,
        "idle_s": IDLE_S,
        "idle_per_s": {label: round(v / IDLE_S, 1) for label, v in sorted(idle.get("worker", {}).items())},
        "app_wall_s": round(app_wall, 2),
        "floor_wall_s": round(floor_wall, 2),
        "app": {
            "gunicorn": per_message(app_counts.get("gunicorn", {})),
            "worker": per_message(app_counts.get("worker", {})),
        },  # fmt: skip
        "floor": {
            "ingest": per_message(floor_counts.get("floor ingest", {})),
            "worker": per_message(floor_counts.get("floor worker", {})),
        },  # fmt: skip
        "empty_polls_per_s": {
            "app worker, idle": round(idle.get("worker", {}).get(empty, 0) / IDLE_S, 1),
            "app worker, under load": round(app_counts.get("worker", {}).get(empty, 0) / app_wall, 1),
            "floor worker, under load": round(floor_counts.get("floor worker", {}).get(empty, 0) / floor_wall, 1),
        },
        "app_result": {
            "e2e_replies_per_s": app.common_result()["e2e"]["replies_per_s"],
            "correct": app.result(stack_db(stack))["correct"],
        },  # fmt: skip
        "floor_result": {
            "e2e_replies_per_s": floor.common_result()["e2e"]["replies_per_s"],
            "correct": floor.result(stack_db(stack))["correct"],
        },  # fmt: skip
    }


def stack_db(stack: Stack) -> Any:
    return MongoClient(stack.mongo.app_url)[DB_NAME]
