"""Raw collections, for the paths where one pymongo round trip beats the ORM's (the webhook,
the worker). django-mongodb-backend's connection hands them out; typed here once.

Inside an admin or API request (`core.db_routing.operator_reads`) they come from the
operators' own pool, as the ORM's queries do."""

from __future__ import annotations

import contextvars
import threading
import time
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
    that is down or hung (it does not). Run outside the caller's operation deadline."""

    def ping() -> bool:
        try:
            _probe().admin.command("ping")
        except PyMongoError:
            return False
        return True

    # A fresh context: no `pymongo.timeout()` of the request (an expired read budget, the
    # breaker's fail-fast deadline) applies to the probe.
    started = time.monotonic()
    try:
        return contextvars.Context().run(ping)
    finally:
        _probe_spent.set(_probe_spent.get() + time.monotonic() - started)


_probe_spent: contextvars.ContextVar[float] = contextvars.ContextVar("probe_spent", default=0.0)


def probe_clock_reset() -> None:
    _probe_spent.set(0.0)


def probe_spent_s() -> float:
    """Time this request (context) spent in `database_answers`: the probe's wait, not the
    request's on the database, counts for nothing in the breaker's rule."""
    return _probe_spent.get()
