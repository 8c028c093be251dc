"""`make run` uses its own embedded server, known by its data folder: never another checkout's
database that happens to answer on MongoDB's well-known port (devtools/run.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pymongo import MongoClient

from devtools.embedded_mongo import (
    URL_RECORD,
    EmbeddedMongo,
    ping,
    port_is_free,
    record_url,
    recorded_url,
    server_serving,
    url_for,
)
from devtools.run import local_database

ROOT = Path(__file__).resolve().parents[2]
WELL_KNOWN_PORT = 27017


@pytest.fixture(scope="module")
def decoy() -> Iterator[EmbeddedMongo | None]:
    """A MongoDB-protocol server on port 27017, as another checkout's `make run` leaves one
    (None: one was there already; this test then never writes to it)."""
    if port_is_free(WELL_KNOWN_PORT):
        server = EmbeddedMongo(port=WELL_KNOWN_PORT).start()
        yield server
        server.stop()
    elif ping(url_for(WELL_KNOWN_PORT), timeout_ms=1000):
        yield None
    else:
        pytest.skip("port 27017 is taken by something that does not speak MongoDB")


def port_of(url: str) -> int | None:
    return urlsplit(url).port


def test_make_run_starts_its_own_server_even_when_one_answers_on_27017(
    decoy: EmbeddedMongo | None, tmp_path: Path
) -> None:
    data = tmp_path / "clone-a" / ".data"
    url, server = local_database(data)
    try:
        assert server is not None and server.process is not None
        assert port_of(url) not in (None, WELL_KNOWN_PORT)
        assert recorded_url(data) == url
        running = server_serving(data / "mongo")
        assert running is not None and (running.pid, running.port) == (server.process.pid, port_of(url))

        client: MongoClient = MongoClient(url, serverSelectionTimeoutMS=5000)
        client["make_run_marker"]["t"].insert_one({"clone": "a"})
        client.close()
        if decoy is not None:
            other: MongoClient = MongoClient(decoy.url, serverSelectionTimeoutMS=5000)
            assert "make_run_marker" not in other.list_database_names()
            other.close()

        # A second `make run` of the same checkout finds the server of its data folder.
        again, started = local_database(data)
        assert (again, started) == (url, None)

        # Another checkout gets a server of its own, not this one.
        other_data = tmp_path / "clone-b" / ".data"
        other_url, other_server = local_database(other_data)
        try:
            assert other_server is not None
            assert port_of(other_url) not in (WELL_KNOWN_PORT, port_of(url))
            client = MongoClient(other_url, serverSelectionTimeoutMS=5000)
            assert "make_run_marker" not in client.list_database_names()
            client.close()
        finally:
            other_server.stop()
    finally:
        if server is not None:
            server.stop()


def test_a_recorded_port_now_held_by_another_server_is_not_reused(decoy: EmbeddedMongo | None, tmp_path: Path) -> None:
    data = tmp_path / ".data"
    record_url(data, url_for(WELL_KNOWN_PORT, app=True))  # the last run's port, taken since
    url, server = local_database(data)
    try:
        assert server is not None
        assert port_of(url) != WELL_KNOWN_PORT
        assert recorded_url(data) == url
    finally:
        if server is not None:
            server.stop()


def test_manage_py_in_a_second_terminal_reads_the_recorded_url() -> None:
    """The settings take the URL `make run` recorded when MONGO_URL is unset."""
    record = ROOT / ".data" / URL_RECORD
    made_here = not record.exists()
    if made_here:
        record_url(ROOT / ".data", "mongodb://127.0.0.1:45678/?directConnection=true&retryWrites=false&maxPoolSize=1")
    expected = recorded_url(ROOT / ".data")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MONGO", "DJANGO_"))}
    env.update({"DJANGO_SETTINGS_MODULE": "config.settings", "DJANGO_SECRET_KEY": "x" * 50})
    try:
        seen = subprocess.run(
            [sys.executable, "-c", "from django.conf import settings; print(settings.MONGO_URL)"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        if made_here:
            record.unlink(missing_ok=True)
    assert seen.returncode == 0, seen.stderr
    assert seen.stdout.strip() == expected
