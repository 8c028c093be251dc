"""The VK kind's endpoints: the Callback API server (`<channel id>/callback`) and the create."""

from __future__ import annotations

import hmac
import logging
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from django.db import DatabaseError
from django.http import HttpResponse
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from pymongo.errors import PyMongoError
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from channels_app.kinds.base import InboundMessage, inbound_ingest
from channels_app.kinds.inbound import body_bounded, json_object
from channels_app.kinds.views import KindChannelCreateView
from channels_app.kinds.vk.callback import event_message
from channels_app.kinds.vk.event_log import event_record, event_seen
from channels_app.kinds.vk.serializers import VkChannelCreatedSerializer, VkChannelCreateSerializer, vk_config
from channels_app.models import Channel
from channels_app.openapi import UNKNOWN_BOT_RESPONSE
from channels_app.serializers import KindChannelCreatedSerializer
from channels_app.services import channel_create_of_kind
from core.api import validated
from core.errors import (
    ApplicationError,
    NotFound,
    database_error_name,
    database_unavailable_response,
    is_database_outage,
)

logger = logging.getLogger(__name__)

KIND_NAME = "vk"
BODY_MAX_BYTES = 1024 * 1024
CHANNEL_NOT_FOUND = "Channel not found"
WRONG_SECRET = "Wrong secret"  # noqa: S105 - a message, not a secret
WRONG_GROUP = "This channel is for another community (group_id)"


class Forbidden(ApplicationError):
    status = status.HTTP_403_FORBIDDEN


def _text(body: str) -> HttpResponse:
    # VK reads the answer's body as it is: "ok", or the confirmation code, nothing around it.
    return HttpResponse(body, content_type="text/plain; charset=utf-8")


def _event(body: bytes) -> dict[str, Any]:
    event = json_object(body, what="a JSON object with a `type`")
    if not isinstance(event.get("type"), str):
        raise ApplicationError("Request body must be a JSON object with a `type`")
    return event


def _channel(channel_id: str) -> Channel:
    try:
        pk = ObjectId(channel_id)
    except (InvalidId, TypeError):
        raise NotFound(CHANNEL_NOT_FOUND) from None
    channel = Channel.objects.filter(pk=pk, kind=KIND_NAME, is_active=True).first()
    if channel is None:
        raise NotFound(CHANNEL_NOT_FOUND)
    return channel


class VkCallbackView(APIView):
    """VK's Callback API server for one channel. VK authenticates itself by the `secret` in each
    event's body (there is no signature header)."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes: list[Any] = []

    @extend_schema(exclude=True)
    def post(self, request: Request, channel_id: str) -> HttpResponse:
        try:
            return self._handle(request, channel_id)
        except (DatabaseError, PyMongoError) as exc:
            # VK resends what was not answered `ok`: a 503 loses nothing. Answered here, not by
            # the API's exception handler: under /api/ this request counts as an operator's
            # (`core.db_routing`), whose timeouts the handler may answer 422 "narrow it".
            if not is_database_outage(exc):
                raise
            logger.warning("vk event not stored: database unavailable (%s)", database_error_name(exc))
            return database_unavailable_response()

    def _handle(self, request: Request, channel_id: str) -> HttpResponse:
        body = body_bounded(request, max_bytes=BODY_MAX_BYTES)
        channel = _channel(channel_id)
        event = _event(body)
        options = channel.kind_options or {}
        group_id = int(options.get("group_id") or 0)
        if event.get("group_id") != group_id:
            raise Forbidden(WRONG_GROUP)
        if event["type"] == "confirmation":
            # Sent when the server's address is saved in VK; carries no secret in every version.
            return _text(str(options.get("confirmation_code") or ""))
        given = event.get("secret")
        expected = channel.kind_secret or ""
        if not isinstance(given, str) or not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            raise Forbidden(WRONG_SECRET)
        channel_key = str(channel.pk)
        event_id = event.get("event_id")
        event_id = event_id if isinstance(event_id, str) else ""
        log = {"channel": channel_key, "vk_event": event["type"], "vk_event_id": event_id[:64]}
        if event_seen(channel_id=channel_key, event_id=event_id):
            logger.info("vk event repeated", extra=log)
            return _text("ok")
        message = event_message(event, group_id=group_id)
        if message is not None:
            result = inbound_ingest(
                InboundMessage(
                    channel=channel,
                    chat_id=message.chat_id,
                    text=message.text,
                    message_id=message.message_id,
                    sender=message.sender,
                )
            )
            log = {**log, "dialogue": result.dialogue_id, "duplicate": result.duplicate}
        event_record(channel_id=channel_key, event_id=event_id)
        logger.info("vk event", extra={**log, "stored": message is not None})
        return _text("ok")


class VkChannelCreateView(KindChannelCreateView):
    """The generic create, plus what VK's settings need from us: the callback URL and, when the
    request left it blank, the generated secret key (shown only here)."""

    def get_serializer_class(self) -> Any:
        return VkChannelCreateSerializer

    @extend_schema(
        operation_id="channels_kinds_vk_create",
        summary="Create a VK channel",
        tags=["channels"],
        request=VkChannelCreateSerializer,
        responses={201: VkChannelCreatedSerializer, 404: UNKNOWN_BOT_RESPONSE},
    )
    def post(self, request: Request) -> Response:
        data = validated(VkChannelCreateSerializer, request.data)
        channel = channel_create_of_kind(
            chat_bot=data["chat_bot_id"],
            name=data["name"],
            kind=self.kind.name,
            config=vk_config(
                group_id=data["group_id"],
                access_token=data["access_token"],
                confirmation_code=data["confirmation_code"],
                secret=data["secret"],
                api_version=data["api_version"],
                api_base_url=data["api_base_url"],
            ),
            is_active=data.get("is_active", True),
        )
        problem = self.kind.after_save(channel)
        body = dict(KindChannelCreatedSerializer(channel, context={"request": request}).data)
        body["callback_url"] = request.build_absolute_uri(reverse("vk-callback", args=[str(channel.pk)]))
        if data["secret_generated"]:
            body["secret"] = data["secret"]
        return Response({**body, "setup_problem": problem}, status=status.HTTP_201_CREATED)
