"""The admin and the management API reach the database through a connection pool of their
own (the `operators` alias: a second MongoClient), and each of their requests is bounded by
MONGO_READ_TIMEOUT_MS. The webhook, the worker and the health checks keep the default pool,
so they never queue behind an operator's read: with one connection per process (`make run`),
one pool is one connection."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import pymongo
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS
from django.http import HttpRequest

OPERATORS_DB = "operators"
WEBHOOK_PREFIX = "/api/webhook/"

_operators: ContextVar[bool] = ContextVar("operators_connection", default=False)
_budgeted: ContextVar[bool] = ContextVar("operators_read_budget", default=False)


def is_operator_request(request: HttpRequest) -> bool:
    """The admin's pages and the management API (every `/api/` path but the webhook's)."""
    path = request.path
    return path.startswith("/admin/") or (path.startswith("/api/") and not path.startswith(WEBHOOK_PREFIX))


def read_budget_s() -> float:
    return float(settings.MONGO_READ_TIMEOUT_MS) / 1000


@contextmanager
def operator_reads(*, budget: bool = True) -> Iterator[None]:
    """Everything inside goes through the operators' pool, and with `budget` every database
    operation in it ends by one deadline, MONGO_READ_TIMEOUT_MS from now (pymongo's
    client-side operation timeout: it also sends the time left as `maxTimeMS`, so the server
    stops the query too)."""
    token, budget_token = _operators.set(True), _budgeted.set(budget)
    try:
        if budget:
            with pymongo.timeout(read_budget_s()):
                yield
        else:
            yield
    finally:
        _budgeted.reset(budget_token)
        _operators.reset(token)


def in_operator_reads() -> bool:
    """Inside an admin or API request's read budget."""
    return _budgeted.get()


def current_alias() -> str:
    if _operators.get() and OPERATORS_DB in settings.DATABASES:
        return OPERATORS_DB
    return DEFAULT_DB_ALIAS


class OperatorsRouter:
    """Routes the ORM to the operators' pool inside `operator_reads()`. Both aliases name the
    same database; only the default one is migrated."""

    def db_for_read(self, model: Any, **hints: Any) -> str:
        return current_alias()

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return current_alias()

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool:
        return db == DEFAULT_DB_ALIAS
