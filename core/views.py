from __future__ import annotations

import logging
import sys
from typing import Any, cast

from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET
from pymongo.errors import PyMongoError

from core.errors import DATABASE_UNAVAILABLE, as_database_outage, database_error_name, is_database_outage

logger = logging.getLogger(__name__)


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive. Touches nothing else: no database, no session, no user, so it
    answers at once while the database hangs (tests/fault/test_database_hang.py)."""
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready to serve: the database answers `ping` within MONGO__TIMEOUT_MS (the client's
    timeoutMS bounds it), else 503."""
    try:
        cast(Any, connection).database.command("ping")
    except (DatabaseError, PyMongoError) as exc:
        response = JsonResponse({"status": "unavailable", "database": database_error_name(exc)}, status=503)
        return as_database_outage(response) if is_database_outage(exc) else response
    return JsonResponse({"status": "ok", "database": "ok"})


def json_not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse({"detail": "Not found."}, status=404)


def json_bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse({"detail": "Bad request."}, status=400)


def json_server_error(request: HttpRequest) -> JsonResponse:
    # Django calls this while handling the exception: a database outage raised outside a
    # view (a session saved by its middleware, say) is a 503 like any other.
    exc = sys.exc_info()[1]
    if exc is not None and is_database_outage(exc):
        logger.warning("database unavailable: %s on %s", database_error_name(exc), request.path)
        return as_database_outage(JsonResponse({"detail": DATABASE_UNAVAILABLE}, status=503))
    return JsonResponse({"detail": "Internal server error"}, status=500)
