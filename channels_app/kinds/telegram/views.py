"""`POST /channels/telegram/<channel id>/updates`: Telegram's webhook for one channel.

Telegram resends an update until it gets a 2xx, so everything we choose not to store is answered
200, and only what a resend can fix (a database outage: 503) or what is not Telegram (a wrong
secret, a body that is not an Update) is answered otherwise."""

from __future__ import annotations

import hmac
import logging
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from channels_app.kinds.base import InboundMessage, inbound_ingest
from channels_app.kinds.inbound import body_bounded, json_object
from channels_app.kinds.telegram.updates import UpdateInvalid, update_message_id, update_read
from channels_app.models import Channel
from core.errors import ApplicationError, NotFound

logger = logging.getLogger(__name__)

KIND_NAME = "telegram"
# Telegram's updates are small (a message's text is at most 4,096 characters); the rest is
# not an update we take.
BODY_MAX_BYTES = 1024 * 1024
# setWebhook's secret_token comes back in this header on every update.
SECRET_HEADER = "HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN"  # noqa: S105 - a header name
UNKNOWN_CHANNEL = "No such Telegram channel"
SECRET_INVALID = "Invalid or missing X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a message


class Unauthorized(ApplicationError):
    status = status.HTTP_401_UNAUTHORIZED


def _channel(channel_id: str) -> Channel:
    try:
        pk = ObjectId(channel_id)
    except (InvalidId, TypeError):
        raise NotFound(UNKNOWN_CHANNEL) from None
    channel = Channel.objects.filter(pk=pk, kind=KIND_NAME, is_active=True).select_related("chat_bot").first()
    if channel is None:
        raise NotFound(UNKNOWN_CHANNEL)
    return channel


def _secret_verify(request: Request, channel: Channel) -> None:
    sent = request._request.META.get(SECRET_HEADER, "")
    expected = channel.kind_secret or ""
    # Bytes: compare_digest refuses str with non-ASCII characters.
    if not expected or not hmac.compare_digest(sent.encode("utf-8", "replace"), expected.encode("utf-8")):
        raise Unauthorized(SECRET_INVALID)


def _update(body: bytes) -> dict[str, Any]:
    return json_object(body, what="a JSON object (a Telegram Update)")


# Only Telegram calls it, with the shapes of its Bot API: out of our OpenAPI description, which
# is for integrators (docs/channels/telegram.md describes it).
@extend_schema(exclude=True)
class TelegramUpdatesView(APIView):
    # Telegram authenticates with the secret token we gave setWebhook, checked in `post`.
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    renderer_classes = [JSONRenderer]
    throttle_classes: list[type] = []

    def post(self, request: Request, channel_id: str) -> Response:
        channel = _channel(channel_id)
        _secret_verify(request, channel)
        update = _update(body_bounded(request, max_bytes=BODY_MAX_BYTES))
        try:
            read = update_read(update)
        except UpdateInvalid as exc:
            raise ApplicationError(str(exc)) from None
        context = {"channel": str(channel.pk), "update_id": read.update_id}
        if read.chat_id is None:
            logger.info("telegram update acknowledged", extra={**context, "ignored": read.ignored})
            return Response({"ok": True, "ignored": read.ignored})
        # A database outage propagates: the exception handler answers 503 and Telegram resends.
        result = inbound_ingest(
            InboundMessage(
                channel=channel, chat_id=read.chat_id, text=read.text, message_id=update_message_id(read.update_id)
            )
        )
        logger.info(
            "telegram update", extra={**context, "message_id": result.message_id, "duplicate": result.duplicate}
        )
        return Response({"ok": True, "duplicate": result.duplicate})
