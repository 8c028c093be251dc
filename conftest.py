"""Fixtures shared by every app's tests. The database is a real MongoDB-protocol server
(`make test` starts a throwaway one); nothing here fakes it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from django.conf import settings
from django.utils import translation
from rest_framework.test import APIClient

from core.caching import lookup_caches_clear
from core.tests.factories import api_token_key
from devtools.receiver import ChannelReceiver
from tests.support.live_server import LiveServer
from worker.loop import Worker


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every database test may use both aliases: the admin's and the API's requests run on the
    `operators` pool (core.db_routing), a mirror of the default database in tests."""
    for item in items:
        marker = item.get_closest_marker("django_db")
        if marker is not None and "databases" not in marker.kwargs:
            item.add_marker(pytest.mark.django_db(*marker.args, **marker.kwargs, databases=DATABASES), append=False)


DATABASES = ["default", "operators"]


@pytest.fixture(autouse=True)
def _language_reset() -> Iterator[None]:
    """A request in another language (Accept-Language, the language cookie) activates it for
    the thread, as LocaleMiddleware does: the next test starts in the default again."""
    yield
    translation.deactivate()


@pytest.fixture
def staff_user(django_user_model):  # type: ignore[no-untyped-def]
    return django_user_model.objects.create_user(
        username="operator", password="operator-pass-123", is_staff=True, is_superuser=True
    )


@pytest.fixture
def api_client(staff_user) -> APIClient:  # type: ignore[no-untyped-def]
    """Authenticated as a staff user with an API token, as integrators call the API."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_key(staff_user)}")
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


# --- A faster flush between database tests ---------------------------------------------------
# Django's TransactionTestCase empties every collection after each test and then emits
# post_migrate, which writes every content type and permission back: about 0.2 s a test on the
# embedded server, a third of the suite. Content types and permissions are what migrate wrote
# and no test changes them, so they are kept, and the rest is emptied with one listing of the
# collections instead of one per collection.
_KEPT_COLLECTIONS = {"django_content_type", "auth_permission"}


@pytest.fixture(scope="session", autouse=True)
def _fast_flush() -> Iterator[None]:
    from django.core.management.commands import flush
    from django_mongodb_backend.operations import DatabaseOperations

    def execute_sql_flush(self, tables):  # type: ignore[no-untyped-def]
        database = self.connection.database
        capped = {info["name"] for info in database.list_collections() if info.get("options", {}).get("capped")}
        for table in tables:
            if table.startswith("system.") or table in capped or table in _KEPT_COLLECTIONS:
                continue
            database[table].delete_many({})

    original_flush, original_emit = DatabaseOperations.execute_sql_flush, flush.emit_post_migrate_signal
    DatabaseOperations.execute_sql_flush = execute_sql_flush
    flush.emit_post_migrate_signal = lambda *args, **kwargs: None
    yield
    DatabaseOperations.execute_sql_flush, flush.emit_post_migrate_signal = original_flush, original_emit
