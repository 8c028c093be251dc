"""One error type for services and one DRF exception handler, so every error has one shape.

Shapes: `{"detail": "..."}` for request-level errors, DRF's `{"field": ["..."]}` for
field validation errors.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, IntegrityError
from django.http.response import HttpResponseBase
from pymongo.errors import ConnectionFailure, PyMongoError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.db_routing import in_operator_reads
from core.mongo import database_answers

logger = logging.getLogger(__name__)

DATABASE_UNAVAILABLE = "Database unavailable, try again later"
RETRY_AFTER_S = "2"


class ApplicationError(Exception):
    """A business-rule failure a client can act on. `status` is the HTTP status it maps to."""

    status: int = status.HTTP_400_BAD_REQUEST

    def __init__(self, message: str, *, status: int | None = None, extra: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.extra = extra or {}


class NotFound(ApplicationError):
    status = status.HTTP_404_NOT_FOUND


class Conflict(ApplicationError):
    status = status.HTTP_409_CONFLICT


def _chain(exc: BaseException) -> list[BaseException]:
    seen: set[int] = set()
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def database_error_name(exc: BaseException) -> str:
    """The driver's error under Django's `DatabaseError` wrapper, for logs: `NetworkTimeout`
    says more than `DatabaseError`."""
    return next((type(e).__name__ for e in _chain(exc) if isinstance(e, PyMongoError)), type(exc).__name__)


def is_database_outage(exc: BaseException) -> bool:
    """True when `exc` (or what it wraps) means the database could not be reached, or did not
    answer within the bound (MONGO_TIMEOUT_MS): the client should try again later."""
    for current in _chain(exc):
        # ConnectionFailure: refused, reset, no server selected, a read that timed out
        # (NetworkTimeout), no pooled connection in time (WaitQueueTimeoutError).
        # `.timeout`: the client-side operation timeout (timeoutMS) ran out before the
        # command was even sent (ExecutionTimeout, "operation would exceed time limit"), the
        # server gave up at the maxTimeMS the driver sent with it (ExecutionTimeout, code 50),
        # or a write concern timed out (WTimeoutError; a BulkWriteError reports either).
        if isinstance(current, ConnectionFailure) or (isinstance(current, PyMongoError) and current.timeout):
            return True
    return False


READ_TOO_SLOW = (
    "This request took longer than its time limit of {budget_ms} ms (MONGO_READ_TIMEOUT_MS) and was "
    "stopped. Narrow it: filter the list (chat_bot_id, channel_id, chat_id), ask for a smaller limit, "
    "or page with the next and previous links."
)


def is_slow_read(exc: BaseException) -> bool:
    """True when `exc` is a database timeout met inside an admin or API request
    (`core.db_routing.operator_reads`) while the database itself answers a ping on a
    connection of its own: the request's work was too heavy for its budget, the database is
    fine. Such a timeout is the client's to narrow (422), never an outage: it must not trip the
    process's breaker, which would fail the webhook's requests too."""
    return in_operator_reads() and is_database_outage(exc) and database_answers()


def read_too_slow_message() -> str:
    return READ_TOO_SLOW.format(budget_ms=settings.MONGO_READ_TIMEOUT_MS)


def as_database_outage[R: HttpResponseBase](response: R) -> R:
    """Adds `Retry-After` to a 503 that answers a database outage, and marks it so that
    `core.middleware.DatabaseUnavailableMiddleware` makes the requests after it fail fast
    until the database answers again."""
    response["Retry-After"] = RETRY_AFTER_S
    response.database_outage = True  # type: ignore[attr-defined]
    return response


def database_unavailable_response() -> Response:
    return as_database_outage(Response({"detail": DATABASE_UNAVAILABLE}, status=status.HTTP_503_SERVICE_UNAVAILABLE))


REQUEST_TOO_LARGE = "Request body too large."


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApplicationError):
        return Response({"detail": exc.message, **exc.extra}, status=exc.status)
    if isinstance(exc, DatabaseError | PyMongoError) and is_database_outage(exc):
        if is_slow_read(exc):
            logger.warning("read over its time limit: %s", database_error_name(exc))
            return Response({"detail": read_too_slow_message()}, status=status.HTTP_422_UNPROCESSABLE_ENTITY)
        logger.warning("database unavailable: %s", database_error_name(exc))
        return database_unavailable_response()
    if isinstance(exc, IntegrityError):
        return Response({"detail": "Conflicts with an existing object"}, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, RequestDataTooBig):
        # Django's DATA_UPLOAD_MAX_MEMORY_SIZE, met while DRF parses the body.
        return Response({"detail": REQUEST_TOO_LARGE}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    return drf_exception_handler(exc, context)
