from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, cast

import pymongo
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _
from pymongo.errors import PyMongoError

from core.db_routing import is_operator_request, operator_reads
from core.errors import (
    DATABASE_UNAVAILABLE,
    REQUEST_TOO_LARGE,
    as_database_outage,
    database_error_name,
    is_database_outage,
    is_slow_read,
    read_too_slow_message,
)
from core.mongo import database_answers, probe_clock_reset, probe_spent_s
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


def _ping_database() -> None:
    # Bounded by the client's timeoutMS (MONGO_TIMEOUT_MS), like every other operation.
    cast(Any, connection).database.command("ping")


def _bound_s() -> float:
    return settings.MONGO_TIMEOUT_MS / 1000


class DatabaseBreaker:
    """Per process: once a request has waited out the bound (MONGO_TIMEOUT_MS) on a database
    that did not answer, the requests after it fail fast instead of waiting too, until the
    database answers a ping.

    Without it, a hung database holds every request for the whole bound: the threads serve
    one request each per bound, the rest queue in gunicorn for longer and longer, and
    /healthz queues behind them.

    While open, requests run under a deadline that has already passed: any database
    operation raises a timeout at once, before sending anything (pymongo's client-side
    operation timeout), and the request answers 503; a request that needs no database is
    served as usual. One background thread pings (each ping bounded by the client's
    timeoutMS) until the database answers, then closes the breaker; no request waits for it
    and nothing needs a restart."""

    # pymongo.timeout(0) means "no limit" to pymongo: the smallest positive deadline instead.
    FAIL_FAST_S = 1e-6

    def __init__(self, *, ping: Callable[[], None] = _ping_database, retry_interval_s: float = 0.2):
        self._ping = ping
        self.retry_interval_s = retry_interval_s
        self._lock = threading.Lock()
        self._opened_at: float | None = None
        self._idle = threading.Event()
        self._idle.set()

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def suspect(self, answers: Callable[[], bool]) -> None:
        """A request waited out the bound: ask in the background whether the database
        answers a ping on a connection of its own (`answers`), and trip unless it does. One
        check at a time; none while open."""
        with self._lock:
            if self._opened_at is not None or not self._idle.is_set():
                return
            self._idle.clear()
        threading.Thread(target=self._check, args=(answers,), name="database-breaker-check", daemon=True).start()

    def _check(self, answers: Callable[[], bool]) -> None:
        try:
            hung = not answers()
        except Exception:  # noqa: BLE001 - a check that failed proves nothing either way
            logger.exception("database check failed unexpectedly")
            hung = False
        try:
            if hung:
                self.trip()
        finally:
            self._idle.set()

    def checked(self, timeout: float) -> bool:
        """Waits until no check is in flight (for tests and shutdown); False on timeout."""
        return self._idle.wait(timeout)

    def trip(self) -> None:
        with self._lock:
            if self._opened_at is not None:
                return
            self._opened_at = time.monotonic()
        logger.warning("database not answering: failing fast until it does")
        threading.Thread(target=self._probe_until_answered, name="database-breaker-probe", daemon=True).start()

    def _probe_until_answered(self) -> None:
        while True:
            try:
                self._ping()
                break
            except Exception as exc:  # noqa: BLE001 - the probe must never die and leave it open
                if not isinstance(exc, DatabaseError | PyMongoError):
                    logger.exception("database probe failed unexpectedly")
                time.sleep(self.retry_interval_s)
        with self._lock:
            opened_at, self._opened_at = self._opened_at, None
        if opened_at is not None:
            logger.warning("database answers again after %.1f s", time.monotonic() - opened_at)


database_breaker = DatabaseBreaker()


class DatabaseUnavailableMiddleware:
    """Turns errors that escaped the views into clear JSON: 503 when the database cannot be
    reached or did not answer within MONGO_TIMEOUT_MS, 500 with the request id otherwise.
    Never a stack trace to the client.

    The admin's and the API's requests run on the operators' own connection pool, within
    their read budget (`core.db_routing.operator_reads`): one that runs out of it while the
    database answers a ping is answered 422 "narrow it" (`core.errors.is_slow_read`), and is
    no outage.

    A database outage answered after waiting at least half the bound (the 503s of this
    middleware, the API's exception handler, the 500 handler and /readyz carry a mark, see
    `core.errors.as_database_outage`) trips the `database_breaker`, unless the database answers
    a ping on a connection of its own (it is slow, not gone); that ping runs in the
    background, after the request has its answer. A failure that came at once held
    no thread, so it trips nothing."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        breaker = database_breaker
        operators = is_operator_request(request)
        if breaker.is_open:
            with pymongo.timeout(DatabaseBreaker.FAIL_FAST_S):
                if operators:
                    with operator_reads(budget=False):
                        return self.get_response(request)
                return self.get_response(request)
        started = time.monotonic()
        probe_clock_reset()
        if operators:
            with operator_reads():
                response = self.get_response(request)
        else:
            response = self.get_response(request)
        waited = time.monotonic() - started - probe_spent_s()
        # Only a database that does not answer trips the breaker: one whose answers were merely
        # slow (this request's pool wait or query ran out of time while a ping on a connection
        # of its own still answers) costs this request its 503, never the requests after it.
        # The ping that tells the two apart runs off this thread: this request has waited
        # long enough, and its answer is already known.
        if getattr(response, "database_outage", False) and waited >= _bound_s() / 2:
            breaker.suspect(database_answers)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, DatabaseError | PyMongoError) and is_slow_read(exception):
            logger.warning("read over its time limit: %s on %s", database_error_name(exception), request.path)
            return slow_read_response(request)
        if isinstance(exception, DatabaseError | PyMongoError) and is_database_outage(exception):
            logger.warning("database unavailable: %s on %s", database_error_name(exception), request.path)
            response: HttpResponse = JsonResponse({"detail": DATABASE_UNAVAILABLE}, status=503)
            return as_database_outage(response)
        if isinstance(exception, RequestDataTooBig) and _wants_json(request):
            return JsonResponse({"detail": REQUEST_TOO_LARGE}, status=413)
        if not _wants_json(request):
            return None
        logger.exception("unhandled error on %s %s", request.method, request.path)
        body = {"detail": "Internal server error", "request_id": getattr(request, "request_id", None)}
        return HttpResponse(json.dumps(body), status=500, content_type="application/json")


def slow_read_response(request: HttpRequest) -> HttpResponse:
    """422: JSON for the API, a readable page in the admin's look for the admin."""
    if _wants_json(request):
        return JsonResponse({"detail": read_too_slow_message()}, status=422)
    page = TemplateResponse(
        request,
        "admin/core/read_too_slow.html",
        {"title": _("This page took too long"), "budget_ms": settings.MONGO_READ_TIMEOUT_MS},
        status=422,
    )
    try:
        return page.render()
    except (DatabaseError, PyMongoError):
        # The page reads nothing itself; should a context processor, past the budget.
        return HttpResponse(read_too_slow_message(), status=422, content_type="text/plain; charset=utf-8")


# The longest URL (path and query string, as sent) the app serves. gunicorn's own limit on the
# whole request line is set above it (`limit_request_line`, deploy/gunicorn.conf.py), so an over-long
# URL gets this JSON 414 in the API's error shape rather than gunicorn's HTML page; only a line
# past gunicorn's hard maximum (8190 bytes) still gets that.
MAX_URL_BYTES = 4096
URL_TOO_LONG = f"URL too long: the path and query string must be at most {MAX_URL_BYTES} bytes"


class UrlLengthLimitMiddleware:
    """Answers 414 with `{"detail": ...}` to a URL longer than MAX_URL_BYTES, before any view
    (or the database) sees it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if url_length(request) > MAX_URL_BYTES:
            return JsonResponse({"detail": URL_TOO_LONG}, status=414)
        return self.get_response(request)


def url_length(request: HttpRequest) -> int:
    # gunicorn passes the URL as sent (RAW_URI); other servers give the decoded path (WSGI
    # strings are latin-1, one character per byte) and the query string as sent.
    raw = request.META.get("RAW_URI")
    if isinstance(raw, str):
        return len(raw)
    query = request.META.get("QUERY_STRING", "")
    return len(request.META.get("PATH_INFO", "")) + (len(query) + 1 if query else 0)
