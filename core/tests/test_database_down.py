"""The app with its database stopped, through the real gunicorn process: clear 503 JSON
within seconds, no stack trace; back to normal when the database returns."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from devtools.embedded_mongo import EmbeddedMongo
from tests.support.live_server import LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[tuple[EmbeddedMongo, LiveServer]]:
    mongo = EmbeddedMongo(storage=str(tmp_path / "db")).start()
    server = LiveServer(db_name="health_down_test", env={"MONGO_URL": mongo.url, "MONGO_TIMEOUT_MS": "1500"})
    server.start()
    yield mongo, server
    server.stop()
    mongo.stop()


def test_health_endpoints_follow_the_database(own_stack: tuple[EmbeddedMongo, LiveServer]) -> None:
    mongo, server = own_stack
    assert requests.get(server.url + "/readyz", timeout=10).status_code == 200

    mongo.stop()
    started = time.monotonic()
    ready = requests.get(server.url + "/readyz", timeout=15)
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    assert time.monotonic() - started < 5

    # Alive even though the database is not.
    assert requests.get(server.url + "/healthz", timeout=5).status_code == 200

    started = time.monotonic()
    api = requests.get(server.url + "/api/channels/", headers={"Authorization": "Token abc"}, timeout=15)
    assert api.status_code == 503
    assert api.headers["Content-Type"].startswith("application/json")
    assert api.json() == {"detail": "Database unavailable, try again later"}
    assert "Traceback" not in api.text
    assert time.monotonic() - started < 5

    # Same port, same data folder: the app recovers without a restart.
    mongo.start()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if requests.get(server.url + "/readyz", timeout=10).status_code == 200:
            break
        time.sleep(0.2)
    else:
        pytest.fail("readyz did not recover after the database came back")
    assert "Traceback" not in server.log_text() or "database unavailable" in server.log_text()
