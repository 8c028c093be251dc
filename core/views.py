from __future__ import annotations

import hmac
import logging
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django.views.i18n import set_language
from drf_spectacular.utils import extend_schema
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from pymongo.errors import PyMongoError
from rest_framework.decorators import api_view, authentication_classes, permission_classes, throttle_classes
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from core.errors import DATABASE_UNAVAILABLE, as_database_outage, database_error_name, is_database_outage
from core.metrics import metrics_exposition
from core.preferences import SESSION_LANGUAGE, language_is_offered, user_language_set

logger = logging.getLogger(__name__)


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive. Touches nothing else: no database, no session, no user, so it
    answers at once while the database hangs (tests/fault/test_database_hang.py)."""
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready to serve: the database answers `ping` within MONGO_TIMEOUT_MS (the client's
    timeoutMS bounds it), else 503."""
    try:
        cast(Any, connection).database.command("ping")
    except (DatabaseError, PyMongoError) as exc:
        response = JsonResponse({"status": "unavailable", "database": database_error_name(exc)}, status=503)
        return as_database_outage(response) if is_database_outage(exc) else response
    return JsonResponse({"status": "ok", "database": "ok"})


_FAVICON = (Path(__file__).parent / "static" / "core" / "favicon.ico").read_bytes()


@require_GET
def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico at the site's root whatever the page links, so it is
    served here, not only under STATIC_URL. Like /healthz it touches no database."""
    response = HttpResponse(_FAVICON, content_type="image/x-icon")
    response["Cache-Control"] = "public, max-age=86400"
    return response


@require_POST
def language_set(request: HttpRequest) -> HttpResponse:
    """Django's `set_language` (the language cookie, then back to `next`), and for a signed-in
    user their own preference too, so the choice follows them to their next sign-in."""
    response = set_language(request)
    language = request.POST.get("language", "")
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and language_is_offered(language):
        user_language_set(user=user, language=language)
        request.session[SESSION_LANGUAGE] = language
    return response


@require_GET
def metrics(request: HttpRequest, collectors: Iterable[Collector] = ()) -> HttpResponse:
    """Prometheus metrics, for `Authorization: Bearer <METRICS_TOKEN>` only (401 otherwise);
    404 while METRICS_TOKEN is unset, as if there were no such endpoint. Like /healthz it
    touches no session or user; only `collectors` (config/urls.py) read the database, cached.
    """
    expected = settings.METRICS_TOKEN
    if not expected:
        return json_not_found(request)
    scheme, _, given = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        response = JsonResponse({"detail": "A valid metrics bearer token is required."}, status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(metrics_exposition(collectors=collectors), content_type=CONTENT_TYPE_LATEST)


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


@extend_schema(exclude=True)
@api_view(["GET"])
@authentication_classes([])
@permission_classes([AllowAny])
@throttle_classes([])
def api_root(request: Request) -> Response:
    """`/api/`: where everything is, as DRF's API root lists it, and open to anyone, since it
    names only URLs (each endpoint asks for its own credentials). No authentication, so it
    touches neither the session nor the database."""
    urls = {
        # The list endpoints answer with and without the trailing slash; docs/integrators.md's form.
        "chatbots": reverse("chatbot-list") + "/",
        "channels": reverse("channel-list") + "/",
        "dialogues": reverse("dialogue-list") + "/",
        "webhook": reverse("webhook-new-message"),
        "schema": reverse("schema"),
        "docs": reverse("swagger-ui"),
        "redoc": reverse("redoc"),
        "admin": reverse("admin:index"),
    }
    return Response({name: request.build_absolute_uri(url) for name, url in urls.items()})
