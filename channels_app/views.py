from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from channels_app import openapi
from channels_app.kinds import DEFAULT_KIND
from channels_app.models import Channel
from channels_app.serializers import (
    ChannelCreatedSerializer,
    ChannelCreateSerializer,
    ChannelFilterSerializer,
    ChannelSerializer,
    ChannelSigningSecretSerializer,
    ChannelUpdatedSerializer,
    ChannelUpdateSerializer,
    ChannelWithTokenSerializer,
    SigningSecretRotateSerializer,
)
from channels_app.services import (
    channel_create,
    channel_rotate_token,
    channel_signing_secret_rotate,
    channel_update,
)
from core.api import (
    ObjectIdLookupMixin,
    query_params,
    validated,
)
from core.errors import Conflict
from core.pagination import OptionalLimitOffsetPagination

# A valid body whose chat_bot_id is well formed but no bot's: what it refers to is not found.


# What the browsable API's form for each write draws (see get_serializer_class).
_FORM_SERIALIZERS: dict[str, type[serializers.Serializer]] = {
    "create": ChannelCreateSerializer,
    "update": ChannelUpdateSerializer,
    "partial_update": ChannelUpdateSerializer,
    "rotate_signing_secret": SigningSecretRotateSerializer,
}


@openapi.channel_schema
class ChannelViewSet(
    ObjectIdLookupMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Channels: where a bot's customers write from. The channel sends the webhook the
    customers' messages (and its employees'); bot replies, and employees' messages written
    here, are delivered to its `url`. Names and shapes are the existing system's contract."""

    serializer_class = ChannelSerializer
    pagination_class = OptionalLimitOffsetPagination

    def get_serializer_class(self) -> Any:
        # The browsable API's forms (and their "Raw data") show what a write takes, its input
        # serializer, not the read shape, whose fields are all read-only (an empty form); an
        # update's form starts from the channel's current values. Writes validate with the
        # input serializers themselves and answer with the read shape: this only changes
        # what the forms draw.
        return _FORM_SERIALIZERS.get(self.action or "", ChannelSerializer)

    def get_queryset(self) -> QuerySet[Channel]:
        channels = Channel.objects.order_by("-created_at", "-id")
        if self.action != "list":
            return channels
        filters = validated(ChannelFilterSerializer, query_params(self.request.query_params))
        if "chat_bot_id" in filters:
            channels = channels.filter(chat_bot_id=filters["chat_bot_id"])
        if "active" in filters:
            channels = channels.filter(is_active=filters["active"])
        return channels

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = validated(ChannelCreateSerializer, request.data)
        channel = channel_create(
            chat_bot=data["chat_bot_id"],
            name=data["name"],
            url=data["url"],
            is_active=data["is_active"],
            typing_events=data["typing_events"],
        )
        return Response(ChannelCreatedSerializer(channel).data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._update(request, partial=False)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._update(request, partial=True)

    def _update(self, request: Request, *, partial: bool) -> Response:
        channel = self.get_object()
        data = validated(ChannelUpdateSerializer, request.data, partial=partial, context={"channel": channel})
        if channel.kind != DEFAULT_KIND and data.get("url") not in (None, channel.settings.url):
            raise Conflict(f"A {channel.kind} channel's URL is its service's API: change it in its form in the admin.")
        channel = channel_update(
            channel=channel,
            name=data.get("name"),
            url=data.get("url"),
            is_active=data.get("is_active"),
            typing_events=data.get("typing_events"),
        )
        return Response(ChannelUpdatedSerializer(channel).data)

    @action(detail=True, methods=["post"])
    def rotate_token(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        channel = self.get_object()
        _webhook_kind_only(channel, "token")
        channel_rotate_token(channel=channel)
        return Response(ChannelWithTokenSerializer(channel).data)

    @action(detail=True, methods=["post"])
    def rotate_signing_secret(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        channel = self.get_object()
        _webhook_kind_only(channel, "signing secret")
        data = validated(SigningSecretRotateSerializer, request.data)
        minutes = data.get("overlap_minutes")
        channel_signing_secret_rotate(channel=channel, overlap_s=None if minutes is None else minutes * 60.0)
        return Response(ChannelSigningSecretSerializer(channel).data)


def _webhook_kind_only(channel: Channel, what: str) -> None:
    """A native kind's channel has no token or signing secret of ours: its credential is its
    service's, changed in its form."""
    if channel.kind != DEFAULT_KIND:
        raise Conflict(f"A {channel.kind} channel has no {what} to rotate: its credential is its service's.")
