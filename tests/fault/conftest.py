"""The fault suite: everything goes through the real gunicorn process, as `make run` serves it.

`fault_server` is that process on the test database, with short channel timeouts (so a
channel that hangs costs the suite half a second, not ten) and debug logging with the
access log on (so the secrets test sees everything the app could write). It runs no worker:
a test that needs replies generated and delivered runs one itself."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings

from devtools.receiver import ChannelReceiver
from tests.support.live_server import LiveServer

ROOT = Path(__file__).resolve().parents[2]
WEBHOOK = "/api/webhook/new_message"
SEED_HEADER = "x-chatbot_auth_token"


@pytest.fixture(scope="session")
def fault_server(django_db_setup, django_db_blocker) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    server = LiveServer(
        db_name=settings.DATABASES["default"]["NAME"],
        env={
            "LOG_LEVEL": "debug",
            "CHANNEL_CONNECT_TIMEOUT_S": "0.5",
            "CHANNEL_ATTEMPT_TIMEOUT_S": "0.5",
        },
    )
    # gunicorn's command line (built in this process) reads the access-log switch from here.
    previous = os.environ.get("SERVER_ACCESS_LOG")
    os.environ["SERVER_ACCESS_LOG"] = "true"
    try:
        server.start()
    finally:
        if previous is None:
            del os.environ["SERVER_ACCESS_LOG"]
        else:
            os.environ["SERVER_ACCESS_LOG"] = previous
    yield server
    server.stop()


def post_webhook(server: LiveServer, secret: str, body: Any, *, timeout: float = 30) -> requests.Response:
    return requests.post(server.url + WEBHOOK, json=body, headers={SEED_HEADER: f"Bearer {secret}"}, timeout=timeout)


def fire_together(count: int, call: Callable[[int], Any]) -> list[Any]:
    """Runs `call(i)` in `count` threads released at the same moment by a barrier."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = call(i)
        except Exception as exc:  # noqa: BLE001 - reported by the test's assertions
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def receiver_on_port(port: int) -> ChannelReceiver:
    """A ChannelReceiver listening on a given port: a channel that was down comes back where
    it was."""
    return ChannelReceiver(port=port).start()


def manage(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`manage.py` as an operator runs it: a separate process, on the test database."""
    full_env = dict(os.environ)
    full_env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings_test",
            "MONGO_DB_NAME": settings.DATABASES["default"]["NAME"],
        }
    )
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout
    )
