"""The widget's endpoints under `/channels/webchat/`: its script, and per channel a
visitor's session, the conversation's messages (read and send) and the admin's try page.

Every endpoint of a channel answers only the channel's allowed origins (CORS): a request whose
`Origin` is not one of them is refused (403) before anything is read or stored. A request
without `Origin` is not a browser page's cross-origin request (a same-origin GET, or a server):
CORS has nothing to say to it, and the visitor's token still decides what it may read."""

from __future__ import annotations

import uuid
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bson import ObjectId
from bson.errors import InvalidId
from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template import engines
from django.utils.translation import get_language
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import Throttled
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from channels_app.kinds.base import InboundMessage, inbound_history, inbound_ingest
from channels_app.kinds.inbound import body_bounded, json_object
from channels_app.kinds.webchat.events import event_insert
from channels_app.kinds.webchat.options import (
    BODY_MAX_BYTES,
    HISTORY_SIZE,
    TEXT_MAX_LENGTH,
    TITLE_MAX_LENGTH,
    channel_origins,
)
from channels_app.kinds.webchat.visitors import Visitor, visitor_from_token, visitor_new, visitor_token
from channels_app.models import Channel
from channels_app.selectors import channel_cached
from core.errors import ApplicationError, NotFound
from core.ratelimit import client_address, parse_rate, rate_hit, rate_key

KIND_NAME = "webchat"
HERE = Path(__file__).resolve().parent
VISITOR_HEADER = "X-Webchat-Visitor"
ALLOW_HEADERS = f"Content-Type, {VISITOR_HEADER}"
# How long a browser may reuse a preflight's answer.
PREFLIGHT_MAX_AGE_S = "600"
SCRIPT_MAX_AGE_S = 300


class Unauthorized(ApplicationError):
    status = status.HTTP_401_UNAUTHORIZED


class Forbidden(ApplicationError):
    status = status.HTTP_403_FORBIDDEN


ORIGIN_REFUSED = "This site is not allowed to use this chat (its origin is not in the channel's allowed origins)"
VISITOR_INVALID = "A valid visitor token for this chat is required (POST session first)"


def webchat_channel(channel_id: str) -> Channel:
    """The active web chat channel `channel_id`; 404 for anything else (unknown, another
    kind, inactive), so ids cannot be probed."""
    try:
        pk = ObjectId(channel_id)
    except (InvalidId, TypeError):
        raise NotFound("Chat not found") from None
    channel = channel_cached(pk)
    if channel is None or channel.kind != KIND_NAME or not channel.is_active:
        raise NotFound("Chat not found")
    return channel


def rate_check(setting: str, scope: str, who: str, detail: str) -> None:
    rate = parse_rate(getattr(settings, setting))
    if rate is None:
        return
    usage = rate_hit(rate_key(scope, who), rate)
    if usage.exceeded:
        raise Throttled(wait=usage.retry_after_s, detail=detail)


def stream_base(request: HttpRequest) -> str:
    """Where the widget opens its event stream: WEBCHAT_STREAM_URL, else this request's host
    on WEBCHAT_STREAM_PORT."""
    if settings.WEBCHAT_STREAM_URL:
        return str(settings.WEBCHAT_STREAM_URL).rstrip("/")
    host = urlsplit(f"//{request.get_host()}").hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    return f"{request.scheme}://{host}:{settings.WEBCHAT_STREAM_PORT}"


def own_origin(request: HttpRequest) -> str:
    return f"{request.scheme}://{request.get_host()}".lower()


class WidgetView(APIView):
    """A channel's endpoint as the widget calls it: CORS, the visitor's token, JSON errors."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes: list[Any] = []
    renderer_classes = [JSONRenderer]

    channel: Channel
    cors_origin = ""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self.channel = webchat_channel(kwargs["channel_id"])
        origin = request.META.get("HTTP_ORIGIN")
        if origin is None:
            return
        allowed = set(channel_origins(self.channel.kind_options))
        if request.method == "OPTIONS":
            # A preflight carries no token: the admin's try page (our own origin) must pass it;
            # its requests are then held to the origin in their token.
            allowed.add(own_origin(request))
        else:
            visitor = self.visitor(required=False)
            if visitor is not None and visitor.try_origin:
                allowed.add(visitor.try_origin)
        if origin.lower() not in allowed:
            raise Forbidden(ORIGIN_REFUSED)
        self.cors_origin = origin

    def visitor(self, *, required: bool = True) -> Visitor | None:
        token = self.request.META.get("HTTP_X_WEBCHAT_VISITOR")
        visitor = visitor_from_token(str(self.channel.pk), token)
        if visitor is None and required:
            raise Unauthorized(VISITOR_INVALID)
        return visitor

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Vary"] = "Origin"
        response["Cache-Control"] = "no-store"
        if self.cors_origin:
            response["Access-Control-Allow-Origin"] = self.cors_origin
            response["Access-Control-Expose-Headers"] = "Retry-After"
        return response

    @extend_schema(exclude=True)
    def options(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        response = Response(status=status.HTTP_204_NO_CONTENT)
        response["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response["Access-Control-Allow-Headers"] = ALLOW_HEADERS
        response["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE_S
        return response

    def body_json(self) -> dict[str, Any]:
        """The body: at most BODY_MAX_BYTES (413), a JSON object (400)."""
        body = body_bounded(self.request, max_bytes=BODY_MAX_BYTES)
        if not body.strip():
            return {}
        return json_object(body)


class SessionView(WidgetView):
    """`POST <id>/session`: the visitor's token. One the widget kept (header) is given back as
    it is when valid for this channel; otherwise a new visitor is made (rate limited per
    address)."""

    @extend_schema(exclude=True)
    def post(self, request: Request, channel_id: str) -> Response:
        self.body_json()  # bounded, even though nothing in it is used
        visitor = self.visitor(required=False)
        token = request.META.get("HTTP_X_WEBCHAT_VISITOR", "")
        if visitor is None:
            rate_check(
                "WEBCHAT_SESSION_RATE",
                "webchat-session",
                client_address(request),
                "Too many new chats from this address.",
            )
            visitor = visitor_new()
            token = visitor_token(str(self.channel.pk), visitor)
        title = str((self.channel.kind_options or {}).get("title") or "")[:TITLE_MAX_LENGTH]
        return Response({"visitor": token, "stream_url": stream_base(request), "title": title})


class MessagesView(WidgetView):
    """`GET <id>/messages`: the visitor's conversation (newest HISTORY_SIZE, oldest first);
    `POST`: one message from the visitor, `{"text", "client_id"}`."""

    @extend_schema(exclude=True)
    def get(self, request: Request, channel_id: str) -> Response:
        visitor = self.visitor()
        assert visitor is not None
        rate_check("WEBCHAT_VISITOR_READ_RATE", "webchat-read", visitor.id, "Too many reads of this chat.")
        messages = inbound_history(self.channel, visitor.chat_id, HISTORY_SIZE)
        return Response(
            {
                "messages": [
                    {"id": m.message_id, "role": m.role, "text": m.text, "at": m.created_at.isoformat()}
                    for m in messages
                ]
            }
        )

    @extend_schema(exclude=True)
    def post(self, request: Request, channel_id: str) -> Response:
        visitor = self.visitor()
        assert visitor is not None
        data = self.body_json()
        text, client_id = data.get("text"), data.get("client_id")
        if not isinstance(text, str) or not text.strip():
            raise ApplicationError("text: a non-blank string is required")
        if len(text) > TEXT_MAX_LENGTH:
            raise ApplicationError(f"text: at most {TEXT_MAX_LENGTH} characters")
        if "\x00" in text:
            raise ApplicationError("text: null characters are not allowed")
        try:
            client_uuid = uuid.UUID(client_id) if isinstance(client_id, str) and len(client_id) <= 36 else None
        except ValueError:
            client_uuid = None
        if client_uuid is None:
            raise ApplicationError("client_id: a UUID is required (the same on every retry of this message)")
        rate_check("WEBCHAT_VISITOR_MESSAGE_RATE", "webchat-visitor", visitor.id, "Too many messages; wait a moment.")
        rate_check(
            "WEBCHAT_ADDRESS_MESSAGE_RATE",
            "webchat-address",
            client_address(request),
            "Too many messages from this address; wait a moment.",
        )
        message_id = f"web-{client_uuid}"
        result = inbound_ingest(
            InboundMessage(channel=self.channel, chat_id=visitor.chat_id, text=text, message_id=message_id)
        )
        if not result.duplicate:
            # The visitor's other tabs show it too.
            event_insert(
                key=f"in-{self.channel.pk}-{message_id}",
                channel_id=str(self.channel.pk),
                chat_id=visitor.chat_id,
                body={"type": "message", "role": "user", "text": text, "message_id": message_id},
            )
        return Response(
            {"id": message_id, "duplicate": result.duplicate}, status=status.HTTP_200_OK if result.duplicate else 201
        )


@cache
def widget_script() -> bytes:
    return (HERE / "webchat.js").read_bytes()


def script_view(request: HttpRequest) -> HttpResponse:
    """The widget: one static file, cacheable, embeddable from any page."""
    response = HttpResponse(widget_script(), content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = f"public, max-age={SCRIPT_MAX_AGE_S}"
    response["Cross-Origin-Resource-Policy"] = "cross-origin"
    return response


@cache
def _template(name: str) -> Any:
    return engines["django"].from_string((HERE / "templates" / name).read_text())


def render(name: str, context: dict[str, Any], request: HttpRequest | None = None) -> str:
    return str(_template(name).render(context, request))


def try_visitor(channel: Channel, request: HttpRequest) -> Visitor:
    """The operator's own visitor on the try page: one conversation per operator and channel,
    continued on every visit, its token valid from our own origin only."""
    return Visitor(id=f"tryuser{getattr(request.user, 'pk', '')}", try_origin=own_origin(request))


@staff_member_required
def try_view(request: HttpRequest, channel_id: str) -> HttpResponse:
    """The admin's "Open web chat": a page of our own that embeds the widget, already open."""
    if not getattr(request.user, "has_perm", lambda _perm: False)("channels_app.view_channel"):
        raise PermissionDenied
    try:
        channel = webchat_channel(channel_id)
    except NotFound:
        return HttpResponse("Chat not found (unknown, inactive, or not a web chat)", status=404)
    visitor = try_visitor(channel, request)
    html = render(
        "webchat_try.html",
        {
            "channel": channel,
            "lang": (get_language() or "en")[:2],
            "script_url": "/channels/webchat/webchat.js",
            "visitor_token": visitor_token(str(channel.pk), visitor),
            "chat_id": visitor.chat_id,
        },
        request,
    )
    response = HttpResponse(html)
    response["Cache-Control"] = "no-store"
    return response
