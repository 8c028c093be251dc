"""Fixtures shared by every app's tests. The database is a real MongoDB-protocol server
(`make test` starts a throwaway one); nothing here fakes it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from django.conf import settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from core.caching import lookup_caches_clear
from tests.support.live_server import LiveServer
from tests.support.receiver import ChannelReceiver
from worker.loop import Worker


@pytest.fixture
def staff_user(django_user_model):  # type: ignore[no-untyped-def]
    return django_user_model.objects.create_user(
        username="operator", password="operator-pass-123", is_staff=True, is_superuser=True
    )


@pytest.fixture
def api_client(staff_user) -> APIClient:  # type: ignore[no-untyped-def]
    """Authenticated as a staff user with a DRF token, as integrators call the API."""
    token = Token.objects.create(user=staff_user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def anon_client() -> APIClient:
    return APIClient()


@pytest.fixture(scope="session")
def live_server_process(django_db_setup, django_db_blocker) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    """Real gunicorn on a free port, serving the test database. Use with
    `@pytest.mark.django_db(transaction=True)` so the test's data is visible to it."""
    server = LiveServer(db_name=settings.DATABASES["default"]["NAME"]).start()
    yield server
    server.stop()


@pytest.fixture
def worker() -> Iterator[Worker]:
    """The real worker, in this process: `worker.drain()` works until nothing is due."""
    instance = Worker(threads=8, poll_ms=5)
    yield instance
    instance.close()


@pytest.fixture
def drain(worker: Worker) -> Callable[[], None]:
    """Runs the worker until nothing is due (what waits for a later time stays)."""

    def run() -> None:
        lookup_caches_clear()  # what a test changed in the database is seen at once
        worker.drain(timeout_s=30)

    return run


@pytest.fixture
def receiver() -> Iterator[ChannelReceiver]:
    """A real local HTTP server playing the channel."""
    server = ChannelReceiver().start()
    yield server
    server.stop()
