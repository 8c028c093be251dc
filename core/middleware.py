from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from pymongo.errors import PyMongoError

from core.errors import DATABASE_UNAVAILABLE, RETRY_AFTER_S, is_database_outage
from core.request_context import reset_request_id, set_request_id

logger = logging.getLogger("core.request")

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    """Takes `X-Request-ID` when it is sane, or makes one; puts it in every log line and
    echoes it in the response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        token = set_request_id(request_id)
        try:
            response = self.get_response(request)
        finally:
            reset_request_id(token)
        response["X-Request-ID"] = request_id
        return response


def _wants_json(request: HttpRequest) -> bool:
    return not request.path.startswith("/admin/")


class DatabaseUnavailableMiddleware:
    """Turns errors that escaped the views into clear JSON: 503 when the database cannot be
    reached, 500 with the request id otherwise. Never a stack trace to the client."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, DatabaseError | PyMongoError) and is_database_outage(exception):
            logger.warning("database unavailable: %s on %s", type(exception).__name__, request.path)
            response: HttpResponse = JsonResponse({"detail": DATABASE_UNAVAILABLE}, status=503)
            response["Retry-After"] = RETRY_AFTER_S
            return response
        if not _wants_json(request):
            return None
        logger.exception("unhandled error on %s %s", request.method, request.path)
        body = {"detail": "Internal server error", "request_id": getattr(request, "request_id", None)}
        return HttpResponse(json.dumps(body), status=500, content_type="application/json")
