"""The database stops in the middle of webhook traffic, then comes back on the same port with
the same data. The app (never restarted) answers 503 within seconds while it is away, never
500, and succeeds again after; every message it acknowledged with 200 is in the database."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from pymongo import MongoClient

from devtools.embedded_mongo import EmbeddedMongo
from devtools.receiver import ChannelReceiver
from tests.fault.conftest import SEED_HEADER, WEBHOOK, manage
from tests.support.live_server import LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DB_NAME = "fault_db_down"
SETUP = """
import json
from channels_app.services import channel_create
from chatbots.services import chatbot_create
bot, secret = chatbot_create(name="outage")
channel = channel_create(chat_bot=bot, name="outage", url={url!r})
print(json.dumps({{"secret": secret, "chat_id": str(channel.pk)}}))
"""


@dataclass
class Sent:
    message_id: str
    started: float
    elapsed: float
    status: int | None
    body: str


@pytest.fixture
def own_stack(tmp_path: Path, receiver: ChannelReceiver) -> Iterator[tuple[EmbeddedMongo, LiveServer, dict]]:
    mongo = EmbeddedMongo(storage=str(tmp_path / "db")).start()
    env = {"MONGO_URL": mongo.url, "MONGO_DB_NAME": DB_NAME}
    migrated = manage("migrate", "--no-input", "-v", "0", env=env)
    assert migrated.returncode == 0, migrated.stderr
    created = manage("shell", "-c", SETUP.format(url=receiver.url), env=env)
    assert created.returncode == 0, created.stderr
    ids = json.loads(created.stdout.strip().splitlines()[-1])
    # The app reaches its database as under `make run`: one connection per process, so the
    # outage is also proven for requests queued behind that one connection.
    server = LiveServer(db_name=DB_NAME, env={**env, "MONGO_URL": mongo.app_url, "MONGO_TIMEOUT_MS": "1500"}).start()
    yield mongo, server, ids
    server.stop()
    mongo.stop()


def test_database_outage_gives_503_then_recovers_without_losing_acknowledged_messages(
    own_stack: tuple[EmbeddedMongo, LiveServer, dict],
) -> None:
    mongo, server, ids = own_stack
    sent: list[Sent] = []
    lock = threading.Lock()
    stop = threading.Event()

    def traffic() -> None:
        session = requests.Session()
        while not stop.is_set():
            message_id = str(uuid.uuid4())
            body = {"message_id": message_id, "chat_id": ids["chat_id"], "text": "hello", "message_sender": "customer"}
            started = time.monotonic()
            try:
                response = session.post(
                    server.url + WEBHOOK, json=body, headers={SEED_HEADER: f"Bearer {ids['secret']}"}, timeout=20
                )
                status, text = response.status_code, response.text
            except requests.RequestException as exc:
                status, text = None, type(exc).__name__
            with lock:
                sent.append(Sent(message_id, started, time.monotonic() - started, status, text))
            time.sleep(0.02)

    threads = [threading.Thread(target=traffic) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.5)
        # The server refuses work from the moment it is asked to stop, before stop() returns.
        stopping_at = time.monotonic()
        mongo.stop()
        stopped_at = time.monotonic()
        time.sleep(5)
        restart_at = time.monotonic()
        mongo.start()
        # Keep sending until the app has answered 200 for a while after the restart.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with lock:
                # The same window as `after` below: a recovery within half a second of the
                # restart must not end the wait with fewer of them than the test counts.
                recovered = [s for s in sent if s.started > restart_at + 0.5 and s.status == 200]
            if len(recovered) >= 10:
                break
            time.sleep(0.2)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)

    statuses = [s.status for s in sent]
    assert None not in statuses, "a request got no HTTP answer"
    assert all(status in (200, 503) for status in statuses), sorted(set(statuses))  # never a 500
    before = [s for s in sent if s.started + s.elapsed < stopping_at]
    during = [s for s in sent if s.started > stopped_at + 0.2 and s.started + s.elapsed < restart_at]
    after = [s for s in sent if s.started > restart_at + 0.5]
    assert before and all(s.status == 200 for s in before)
    # While the database is away: 503 with the clear JSON error, within a few seconds.
    assert during, "no request was made while the database was stopped"
    assert all(s.status == 503 for s in during), [(s.status, s.body[:80]) for s in during]
    assert all(s.elapsed < 6 for s in during), max(s.elapsed for s in during)
    assert json.loads(during[0].body) == {"detail": "Database unavailable, try again later"}
    # Back without restarting the app.
    assert server.process is not None and server.process.poll() is None
    assert len([s for s in after if s.status == 200]) >= 10
    assert after[-1].status == 200

    # Every acknowledged message is stored.
    acknowledged = {s.message_id for s in sent if s.status == 200}
    client: MongoClient = MongoClient(mongo.url, serverSelectionTimeoutMS=5000)
    try:
        stored = {
            doc["message_id"]
            for doc in client[DB_NAME].dialogues_message.find(
                {"message_id": {"$in": list(acknowledged)}, "role": "USER"}, {"message_id": 1}
            )
        }
    finally:
        client.close()
    assert acknowledged - stored == set()
    assert "Traceback" not in server.log_text()
