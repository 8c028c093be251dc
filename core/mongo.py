"""Raw collections, for the paths where one pymongo round trip beats the ORM's (the webhook,
the worker). django-mongodb-backend's connection hands them out; typed here once.

Inside an admin or API request (`core.db_routing.operator_reads`) they come from the
operators' own pool, as the ORM's queries do."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from typing import Any, cast

from django.conf import settings
from django.db import connections
from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.errors import PyMongoError

from core.db_routing import current_alias

# The probe's own answer must come quickly (a ping costs milliseconds even beside a heavy
# query); a database that cannot answer one in this long (at most a quarter of
# MONGO_TIMEOUT_MS, so that an outage is still answered within the bound) is not answering.
PROBE_TIMEOUT_MS = 1000


def mongo_collection(name: str) -> Collection[dict[str, Any]]:
    return cast(Any, connections[current_alias()]).get_collection(name)


def own_client(*, appname: str, timeout_ms: int) -> MongoClient[dict[str, Any]]:
    """A client of its own (one connection), for work that must never hold or wait for the
    connections requests use: the outage probe, the counters' background writes."""
    database: dict[str, Any] = settings.DATABASES["default"]
    bound = max(timeout_ms, 1)
    options: dict[str, Any] = {
        **database.get("OPTIONS", {}),
        "timeoutMS": bound,
        "serverSelectionTimeoutMS": bound,
        "connectTimeoutMS": bound,
        "maxPoolSize": 1,
        "appname": appname,
    }
    return MongoClient(database["HOST"], **options)


_probe_lock = threading.Lock()
_probe_client: MongoClient[dict[str, Any]] | None = None


def _probe() -> MongoClient[dict[str, Any]]:
    global _probe_client
    with _probe_lock:
        if _probe_client is None:
            bound = min(PROBE_TIMEOUT_MS, settings.MONGO_TIMEOUT_MS // 4)
            _probe_client = own_client(appname="chatbot-platform-probe", timeout_ms=bound)
        return _probe_client


def database_answers() -> bool:
    """Whether the database answers a ping on a connection of its own (not a pool a slow
    query holds), within PROBE_TIMEOUT_MS. Tells a slow query (it answers) from a database
    that is down or hung (it does not). Run outside the caller's operation deadline.

    Single flight: callers that arrive while a ping is in flight share its answer instead of
    queueing for the probe's one connection one after another. When a database hangs, every
    request in flight waits out its bound and asks at nearly the same moment; asking in turn
    added up to the probe's bound per caller to the last one's answer (a /readyz asked as the
    hang began answered after 2.37 s, for a bound of 1.5 s)."""
    started = time.monotonic()
    try:
        return _probe_flight.answer()
    finally:
        _probe_spent.set(_probe_spent.get() + time.monotonic() - started)


def _ping() -> bool:
    try:
        _probe().admin.command("ping")
    except PyMongoError:
        return False
    return True


class _Flight:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.answer = False


class _SingleFlight:
    """One call of `work` at a time; callers arriving meanwhile get that call's answer."""

    def __init__(self, work: Callable[[], bool]):
        self._work = work
        self._lock = threading.Lock()
        self._flight: _Flight | None = None

    def answer(self) -> bool:
        with self._lock:
            flight, leader = self._flight, self._flight is None
            if flight is None:
                flight = self._flight = _Flight()
        if not leader:
            flight.done.wait()
            return flight.answer
        try:
            # A fresh context: no `pymongo.timeout()` of the request (an expired read budget,
            # the breaker's fail-fast deadline) applies to the probe.
            flight.answer = contextvars.Context().run(self._work)
        finally:
            with self._lock:
                self._flight = None
            flight.done.set()
        return flight.answer


_probe_flight = _SingleFlight(_ping)


_probe_spent: contextvars.ContextVar[float] = contextvars.ContextVar("probe_spent", default=0.0)


def probe_clock_reset() -> None:
    _probe_spent.set(0.0)


def probe_spent_s() -> float:
    """Time this request (context) spent in `database_answers`: the probe's wait, not the
    request's on the database, counts for nothing in the breaker's rule."""
    return _probe_spent.get()
