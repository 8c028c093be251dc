from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pymongo
import pytest
from django.db import DatabaseError, IntegrityError
from pymongo.errors import (
    DuplicateKeyError,
    ExecutionTimeout,
    NetworkTimeout,
    OperationFailure,
    ServerSelectionTimeoutError,
    WaitQueueTimeoutError,
    WTimeoutError,
)
from pymongo.synchronous.pool import Pool

import core.middleware
import core.mongo
from core.errors import DATABASE_UNAVAILABLE, is_database_outage
from core.middleware import DatabaseBreaker
from core.views import json_server_error

OUTAGE = {"detail": DATABASE_UNAVAILABLE}


@pytest.mark.django_db
def test_healthz_answers_ok(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_pings_the_database(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["database"] == "ok"


@pytest.mark.django_db
def test_request_id_is_echoed_or_generated(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/healthz", HTTP_X_REQUEST_ID="abc-123")["X-Request-ID"] == "abc-123"
    generated = client.get("/healthz", HTTP_X_REQUEST_ID="bad id\nwith newline")["X-Request-ID"]
    assert generated != "bad id\nwith newline" and len(generated) == 32


# --- A database that does not answer (issue 16) -----------------------------------------


@pytest.fixture
def breaker(monkeypatch: pytest.MonkeyPatch) -> Iterator[DatabaseBreaker]:
    """A breaker of the test's own, whose probe answers only when the test says so."""
    answers = threading.Event()

    def ping() -> None:
        if not answers.wait(10):
            raise ServerSelectionTimeoutError("no answer yet")

    fresh = DatabaseBreaker(ping=ping, retry_interval_s=0.01)
    fresh.answers = answers  # type: ignore[attr-defined]
    monkeypatch.setattr(core.middleware, "database_breaker", fresh)
    yield fresh
    answers.set()  # lets its probe thread finish


def checkouts_fail(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every database operation fails as when no pooled connection came in time (the error
    pymongo's topology ignores, so the test client's server stays known). A read retries
    until its deadline (the client's timeoutMS, or a shorter `pymongo.timeout()`), a command
    fails at once. Returns the checkout times, to show whether anything touched the database."""
    calls: list[float] = []

    def checkout(self, handler=None):  # type: ignore[no-untyped-def]
        calls.append(time.monotonic())
        raise WaitQueueTimeoutError("Timed out while checking out a connection from connection pool")

    monkeypatch.setattr(Pool, "checkout", checkout)
    return calls


@pytest.mark.parametrize(
    "exc",
    [
        NetworkTimeout("timed out"),
        WaitQueueTimeoutError("no connection in time"),
        ServerSelectionTimeoutError("no servers"),
        ExecutionTimeout("operation would exceed time limit", 50),
        OperationFailure("operation exceeded time limit", 50),
        WTimeoutError("waiting for replication timed out", 64, {"errInfo": {"wtimeout": True}}),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_timeouts_are_database_outages(exc: Exception) -> None:
    assert is_database_outage(exc)
    try:
        raise DatabaseError from exc  # as django-mongodb-backend wraps them
    except DatabaseError as wrapped:
        assert is_database_outage(wrapped)


@pytest.mark.parametrize(
    "exc",
    [DuplicateKeyError("E11000"), OperationFailure("bad query", 2), ValueError("x"), IntegrityError()],
    ids=lambda exc: type(exc).__name__,
)
def test_other_errors_are_not_outages(exc: Exception) -> None:
    assert not is_database_outage(exc)


@pytest.mark.django_db
def test_healthz_touches_no_database_session_or_user(client, staff_user, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    client.force_login(staff_user)  # a session cookie that a careless middleware would load
    calls = checkouts_fail(monkeypatch)

    response = client.get("/healthz", HTTP_AUTHORIZATION="Token abc")
    assert response.status_code == 200
    assert calls == []
    # The same patch does catch a request that touches the database.
    assert client.get("/readyz").status_code == 503
    assert calls


@pytest.mark.django_db
def test_readyz_and_api_answer_503_with_retry_after_when_database_times_out(
    client, api_client, breaker, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    checkouts_fail(monkeypatch)

    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable", "database": "WaitQueueTimeoutError"}
    assert ready["Retry-After"] == "2"

    with pymongo.timeout(0.2):  # a read retries until then
        api = api_client.get("/api/channels/")
    assert api.status_code == 503
    assert api.json() == OUTAGE
    assert api["Retry-After"] == "2"
    # They failed well within the bound: no thread was held long, nothing to protect.
    assert breaker.checked(5)
    assert not breaker.is_open


@pytest.mark.django_db
def test_a_request_that_waited_out_the_bound_makes_the_next_ones_fail_fast(
    client, api_client, breaker, monkeypatch, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.MONGO_TIMEOUT_MS = 300
    checkout = Pool.checkout
    calls: list[float] = []

    def hung_checkout(self, handler=None):  # type: ignore[no-untyped-def]
        # More than half the bound spent waiting for a connection, whatever the read's retries.
        calls.append(time.monotonic())
        time.sleep(0.2)
        raise WaitQueueTimeoutError("Timed out while checking out a connection from connection pool")

    monkeypatch.setattr(Pool, "checkout", hung_checkout)
    # Nor does it answer a ping on a connection of its own: it is down, not slow.
    monkeypatch.setattr(core.middleware, "database_answers", lambda: False)
    monkeypatch.setattr("core.errors.database_answers", lambda: False)
    # A deadline well above the connection's round-trip time, or pymongo fails the read at once
    # ("would exceed time limit") on a busy machine, holding no thread, and nothing trips.
    with pymongo.timeout(1.0):
        assert api_client.get("/api/channels/").status_code == 503
    assert breaker.checked(5)
    assert breaker.is_open
    monkeypatch.setattr(Pool, "checkout", checkout)  # the database is fine again; only the probe may say so
    touched = len(calls)

    # While open, database work fails at once (the deadline has passed before it starts:
    # ExecutionTimeout, "operation would exceed time limit"), with the same 503.
    started = time.monotonic()
    api = api_client.get("/api/channels/")
    assert api.status_code == 503
    assert api.json() == OUTAGE
    assert api["Retry-After"] == "2"
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert time.monotonic() - started < 0.5
    # What needs no database is served as usual.
    assert client.get("/healthz").status_code == 200
    assert len(calls) == touched

    breaker.answers.set()  # type: ignore[attr-defined]
    deadline = time.monotonic() + 5
    while breaker.is_open and time.monotonic() < deadline:
        time.sleep(0.01)
    assert breaker.checked(5)
    assert not breaker.is_open
    assert api_client.get("/api/channels/").status_code == 200
    assert client.get("/readyz").status_code == 200


@pytest.mark.django_db
def test_a_slow_database_that_still_answers_a_ping_fails_one_request_and_trips_nothing(
    api_client, breaker, monkeypatch, settings
) -> None:  # type: ignore[no-untyped-def]
    """The request that waited out the bound gets its 503; the ones after it are served as
    usual, because the database answers a ping of its own (slow, not gone)."""
    settings.MONGO_TIMEOUT_MS = 300
    checkout = Pool.checkout
    checkouts_fail(monkeypatch)
    monkeypatch.setattr(core.middleware, "database_answers", lambda: True)
    with pymongo.timeout(0.2):
        assert api_client.get("/api/channels/").status_code == 503
    assert breaker.checked(5)
    assert not breaker.is_open
    monkeypatch.setattr(Pool, "checkout", checkout)
    assert api_client.get("/api/channels/").status_code == 200


def test_breaker_probes_until_the_database_answers() -> None:
    pings: list[float] = []

    def ping() -> None:
        pings.append(time.monotonic())
        if len(pings) < 3:
            raise ServerSelectionTimeoutError("no servers")

    breaker = DatabaseBreaker(ping=ping, retry_interval_s=0.01)
    breaker.trip()
    breaker.trip()  # already open: no second probe
    assert breaker.checked(5)
    assert breaker.is_open
    deadline = time.monotonic() + 5
    while breaker.is_open and time.monotonic() < deadline:
        time.sleep(0.01)
    assert breaker.checked(5)
    assert not breaker.is_open
    assert len(pings) == 3


def test_server_error_handler_answers_an_outage_raised_outside_views_as_503(rf) -> None:  # type: ignore[no-untyped-def]
    request = rf.get("/admin/")
    try:
        raise DatabaseError from NetworkTimeout("timed out")
    except DatabaseError:
        response = json_server_error(request)
    assert response.status_code == 503
    assert response["Retry-After"] == "2"
    try:
        raise ValueError("a bug")
    except ValueError:
        assert json_server_error(request).status_code == 500


def test_callers_asking_while_a_probe_is_in_flight_share_its_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hang makes every request in flight ask at once: they wait for one ping, not for one
    ping each in turn on the probe's one connection."""
    started = threading.Event()
    release = threading.Event()
    pings: list[float] = []

    def ping() -> bool:
        pings.append(time.monotonic())
        started.set()
        release.wait(5)
        return False

    flight = core.mongo._SingleFlight(ping)
    monkeypatch.setattr(core.mongo, "_probe_flight", flight)
    answers: list[bool] = []
    callers = [threading.Thread(target=lambda: answers.append(core.mongo.database_answers())) for _ in range(6)]
    callers[0].start()
    assert started.wait(5)
    for caller in callers[1:]:
        caller.start()
    time.sleep(0.1)
    release.set()
    for caller in callers:
        caller.join(5)
    assert answers == [False] * 6
    assert len(pings) == 1
    # The next question, after the flight landed, pings again.
    release.clear()
    threading.Timer(0.05, release.set).start()
    assert core.mongo.database_answers() is False
    assert len(pings) == 2
