"""One error type for services and one DRF exception handler, so every error has one shape.

Shapes: `{"detail": "..."}` for request-level errors, DRF's `{"field": ["..."]}` for
field validation errors.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError, IntegrityError
from pymongo.errors import ConnectionFailure, PyMongoError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

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


def is_database_outage(exc: BaseException) -> bool:
    """True when `exc` (or what it wraps) means the database could not be reached."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionFailure):  # includes timeouts and AutoReconnect
            return True
        current = current.__cause__ or current.__context__
    return False


def database_unavailable_response() -> Response:
    return Response(
        {"detail": DATABASE_UNAVAILABLE},
        status=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": RETRY_AFTER_S},
    )


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApplicationError):
        return Response({"detail": exc.message, **exc.extra}, status=exc.status)
    if isinstance(exc, DatabaseError | PyMongoError) and is_database_outage(exc):
        logger.warning("database unavailable: %s", type(exc).__name__)
        return database_unavailable_response()
    if isinstance(exc, IntegrityError):
        return Response({"detail": "Conflicts with an existing object"}, status=status.HTTP_409_CONFLICT)
    return drf_exception_handler(exc, context)
