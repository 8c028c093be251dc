"""Raw collections, for the paths where one pymongo round trip beats the ORM's (the webhook,
the worker). django-mongodb-backend's connection hands them out; typed here once.

Inside an admin or API request (`core.db_routing.operator_reads`) they come from the
operators' own pool, as the ORM's queries do."""

from __future__ import annotations

import contextvars
import threading
from typing import Any, cast

from django.conf import settings
from django.db import connections
from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.errors import PyMongoError

from core.db_routing import current_alias

# The probe's own answer must come quickly; a database that cannot answer a ping in this long
# is not answering.
PROBE_TIMEOUT_MS = 1000


def mongo_collection(name: str) -> Collection[dict[str, Any]]:
    return cast(Any, connections[current_alias()]).get_collection(name)


_probe_lock = threading.Lock()
_probe_client: MongoClient[dict[str, Any]] | None = None


def _probe() -> MongoClient[dict[str, Any]]:
    global _probe_client
    with _probe_lock:
        if _probe_client is None:
            database = settings.DATABASES["default"]
            bound = min(PROBE_TIMEOUT_MS, settings.MONGO_TIMEOUT_MS)
            options = {
                **database.get("OPTIONS", {}),
                "timeoutMS": bound,
                "serverSelectionTimeoutMS": bound,
                "connectTimeoutMS": bound,
                "maxPoolSize": 1,
                "appname": "chatbot-platform-probe",
            }
            _probe_client = MongoClient(database["HOST"], **options)
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
    return contextvars.Context().run(ping)
