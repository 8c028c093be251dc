"""The database hangs (SIGSTOP: its port still accepts connections, nothing answers) in the
middle of steady webhook traffic, and a burst of three times as many requests as gunicorn has
threads arrives while it hangs; then it resumes (SIGCONT). The app, never restarted, answers
every request within the bound (MONGO_TIMEOUT_MS) plus a second, with 200 or 503 JSON and
Retry-After, never 500; /healthz answers at once throughout; /readyz says 503 within the
bound; and after the database resumes, every message acknowledged with 200 (at once, or by a
channel's retry of a 503) is stored exactly once."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from pymongo import MongoClient

from devtools.embedded_mongo import EmbeddedMongo
from devtools.receiver import ChannelReceiver
from tests.fault.conftest import SEED_HEADER, WEBHOOK, fire_together, manage
from tests.support.live_server import LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DB_NAME = "fault_db_hang"
TIMEOUT_MS = 1500
BOUND_S = TIMEOUT_MS / 1000
FREEZE_S = 5.0
THREADS = 8
# Steady clients, fewer than the threads: the requests in flight when the database hangs
# wait out the bound (nothing can tell a hang from a slow answer sooner), and /healthz
# needs a thread that is not one of them.
CLIENTS = 6
# Then, once the app knows the database hangs, three requests per thread at once: without
# failing fast, they would queue in gunicorn for several bounds, and /healthz behind them.
BURST = 3 * THREADS
# /healthz reads nothing from the database: it answers well inside the bound even on a busy
# machine, while a health check queued behind the hung requests would wait the whole bound.
HEALTH_LIMIT_S = BOUND_S / 3
# Back to 200 within the bound of the probe in flight, plus its retry interval.
RECOVERY_S = BOUND_S + 0.5
SETUP = """
import json
from channels_app.services import channel_create
from chatbots.services import chatbot_create
bot, secret = chatbot_create(name="hang")
channel = channel_create(chat_bot=bot, name="hang", url={url!r})
print(json.dumps({{"secret": secret, "chat_id": str(channel.pk)}}))
"""


@dataclass
class Sent:
    message_id: str
    burst: bool
    started: float
    elapsed: float
    status: int | None
    body: str
    retry_after: str | None


@dataclass
class Probe:
    started: float
    elapsed: float
    status: float


# Prints "started elapsed status" (time.monotonic() is the same clock in every process) for a
# GET /healthz on a new connection every 50 ms, until its stdin closes.
HEALTH_POLLER = """
import http.client, sys, threading, time
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
while not stop.is_set():
    started = time.monotonic()
    try:
        connection = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=10)
        connection.request("GET", "/healthz")
        status = connection.getresponse().status
        connection.close()
    except OSError:
        status = 0
    print(started, time.monotonic() - started, status, flush=True)
    time.sleep(0.05)
"""


@pytest.fixture
def own_stack(tmp_path: Path, receiver: ChannelReceiver) -> Iterator[tuple[EmbeddedMongo, LiveServer, dict]]:
    mongo = EmbeddedMongo(storage=str(tmp_path / "db")).start()
    env = {"MONGO_URL": mongo.url, "MONGO_DB_NAME": DB_NAME}
    migrated = manage("migrate", "--no-input", "-v", "0", env=env)
    assert migrated.returncode == 0, migrated.stderr
    created = manage("shell", "-c", SETUP.format(url=receiver.url), env=env)
    assert created.returncode == 0, created.stderr
    ids = json.loads(created.stdout.strip().splitlines()[-1])
    # As `make run` serves it: one database connection per process (threads queue for it, so
    # the queue must be bounded too), 8 threads.
    # And the worker beside it, as `make run` starts it: it lives through the freeze too.
    server = LiveServer(
        db_name=DB_NAME,
        threads=THREADS,
        env={**env, "MONGO_URL": mongo.app_url, "MONGO_TIMEOUT_MS": str(TIMEOUT_MS)},
        worker=True,
    ).start()
    yield mongo, server, ids
    assert mongo.process is not None
    if mongo.process.poll() is None:
        os.kill(mongo.process.pid, signal.SIGCONT)  # never leave a stopped process behind
    server.stop()
    mongo.stop()


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1] if len(values) > 1 else values[0]


def test_hung_database_fails_fast_keeps_healthz_and_loses_nothing(
    own_stack: tuple[EmbeddedMongo, LiveServer, dict], receiver: ChannelReceiver
) -> None:
    mongo, server, ids = own_stack
    assert mongo.process is not None
    sent: list[Sent] = []
    lock = threading.Lock()
    stop = threading.Event()
    headers = {SEED_HEADER: f"Bearer {ids['secret']}"}

    def body(message_id: str) -> dict:
        return {"message_id": message_id, "chat_id": ids["chat_id"], "text": "hello", "message_sender": "customer"}

    def send(session: requests.Session, *, burst: bool = False) -> None:
        message_id = str(uuid.uuid4())
        started = time.monotonic()
        try:
            response = session.post(server.url + WEBHOOK, json=body(message_id), headers=headers, timeout=20)
            status, text, retry_after = response.status_code, response.text, response.headers.get("Retry-After")
        except requests.RequestException as exc:
            status, text, retry_after = None, type(exc).__name__, None
        with lock:
            sent.append(Sent(message_id, burst, started, time.monotonic() - started, status, text, retry_after))

    def traffic() -> None:
        session = requests.Session()
        while not stop.is_set():
            send(session)
            time.sleep(0.05)

    ready: list[tuple[float, requests.Response]] = []

    def readyz() -> None:
        started = time.monotonic()
        response = requests.get(server.url + "/readyz", timeout=20)
        ready.append((time.monotonic() - started, response))

    threads = [threading.Thread(target=traffic) for _ in range(CLIENTS)]
    # /healthz is timed from a process of its own, so that the load this process makes (its
    # threads share one GIL) does not count against the app.
    poller = subprocess.Popen(
        [sys.executable, "-c", HEALTH_POLLER, "127.0.0.1", str(server.port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.5)
        frozen_at = time.monotonic()
        os.kill(mongo.process.pid, signal.SIGSTOP)
        # Readiness, asked as the hang begins (it queues behind the requests in flight for the
        # one database connection) and again once the app knows.
        readiness = threading.Thread(target=readyz)
        readiness.start()
        time.sleep(BOUND_S + 0.5)
        readyz()
        readiness.join(20)
        fire_together(BURST, lambda _: send(requests.Session(), burst=True))
        time.sleep(max(0.0, frozen_at + FREEZE_S - time.monotonic()))
        thawed_at = time.monotonic()
        os.kill(mongo.process.pid, signal.SIGCONT)
        # Keep sending until the app has answered 200 for a while after the database resumed
        # (the breaker's probe, bounded like any operation, tells within the bound).
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with lock:
                recovered = [s for s in sent if s.started > thawed_at + RECOVERY_S and s.status == 200]
            if len(recovered) >= 20:
                break
            time.sleep(0.2)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        output, _ = poller.communicate(timeout=30)
    health = [Probe(*map(float, line.split())) for line in output.splitlines()]

    during = [s for s in sent if frozen_at <= s.started < thawed_at]
    elapsed = [s.elapsed for s in during]
    burst = [s.elapsed for s in sent if s.burst]
    health_frozen = [p.elapsed for p in health if frozen_at <= p.started < thawed_at]
    first_ok = min((s.started + s.elapsed for s in sent if s.started > thawed_at and s.status == 200), default=0)
    report = (
        f"first 200 {first_ok - thawed_at:.2f} s after SIGCONT; "
        f"during freeze: {len(during)} requests, {Counter(s.status for s in during)}, "
        f"p50 {statistics.median(elapsed):.3f} s, p95 {p95(elapsed):.3f} s, max {max(elapsed):.3f} s; "
        f"burst of {len(burst)}: max {max(burst):.3f} s; "
        f"healthz while frozen: {len(health_frozen)}, max {max(health_frozen) * 1000:.0f} ms, "
        f"overall max {max(p.elapsed for p in health) * 1000:.0f} ms; "
        f"readyz {[(r.status_code, round(t, 3)) for t, r in ready]}; all: {Counter(s.status for s in sent)}"
    )
    print(report)

    # Every request got an answer, 200 or 503, never a 500 and never a hang.
    statuses = Counter(s.status for s in sent)
    assert set(statuses) <= {200, 503}, report
    for s in sent:
        if s.status == 503:
            assert json.loads(s.body).keys() == {"detail"}, s.body
            assert s.retry_after is not None and int(s.retry_after) > 0
    # The freeze was felt, and bounded: p95 within the bound plus a second.
    assert len(during) >= CLIENTS + BURST, report
    assert any(s.status == 503 for s in during), report
    assert p95(elapsed) <= BOUND_S + 1.0, report
    assert max(elapsed) <= BOUND_S + 1.0, report
    assert len(burst) == BURST and max(burst) <= BOUND_S + 1.0, report
    # /healthz never touches the database and never queues behind requests that do.
    assert all(p.status == 200 for p in health), report
    assert len(health_frozen) >= 10, report
    assert max(p.elapsed for p in health) < HEALTH_LIMIT_S, report
    # /readyz tells the truth within the bound.
    assert len(ready) == 2, report
    for ready_elapsed, response in ready:
        assert response.status_code == 503, report
        assert response.json()["status"] == "unavailable"
        assert ready_elapsed <= BOUND_S + 0.5, report

    # Back without a restart.
    assert server.process is not None and server.process.poll() is None
    after = [s for s in sent if s.started > thawed_at + RECOVERY_S]
    assert len([s for s in after if s.status == 200]) >= 10, report
    assert all(s.status == 200 for s in after), Counter(s.status for s in after)
    assert requests.get(server.url + "/readyz", timeout=10).status_code == 200

    # A channel retries what got 503, as Retry-After asks: now each is taken.
    refused = [s.message_id for s in sent if s.status != 200]
    for message_id in refused:
        retried = requests.post(server.url + WEBHOOK, json=body(message_id), headers=headers, timeout=10)
        assert retried.status_code == 200, retried.text

    # Every message is stored exactly once: none lost, none doubled, whatever the freeze cut.
    client: MongoClient = MongoClient(mongo.url, serverSelectionTimeoutMS=5000)
    try:
        stored = Counter(
            doc["message_id"]
            for doc in client[DB_NAME].dialogues_message.find(
                {"message_id": {"$in": [s.message_id for s in sent]}, "role": "USER"}, {"message_id": 1}
            )
        )
    finally:
        client.close()
    assert {s.message_id for s in sent} - set(stored) == set()
    assert [message_id for message_id, count in stored.items() if count != 1] == []
    assert "Traceback" not in server.log_text()

    # The worker lived through the freeze (no restart), and every message got exactly one reply.
    assert server.worker is not None and server.worker.process is not None
    assert server.worker.process.poll() is None and server.worker.starts == 1
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len({r.json["in_reply_to"] for r in receiver.requests}) < len(sent):
        time.sleep(0.1)
    replies = Counter(r.json["in_reply_to"] for r in receiver.requests)
    assert set(replies) == {s.message_id for s in sent}, f"{len(replies)} of {len(sent)} answered"
    webhook_ids: dict[str, set[str]] = {}
    for request in receiver.requests:
        webhook_ids.setdefault(request.json["in_reply_to"], set()).add(request.headers["webhook-id"])
    # Never two different replies to one message.
    assert [message_id for message_id, ids in webhook_ids.items() if len(ids) != 1] == []
    # And each reply POSTed once: the worker never died, and a pass that lost its end to the
    # hang is followed by one that looks for the stored reply before it would post it again
    # (a repeat, always with the same webhook-id, is only for a worker killed mid-POST).
    repeated = {message_id: count for message_id, count in replies.items() if count != 1}
    assert repeated == {}, {message_id: sorted(webhook_ids[message_id]) for message_id in repeated}
    assert "Traceback" not in server.worker.log_text()
