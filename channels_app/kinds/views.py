from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from channels_app.kinds.base import ChannelKind
from channels_app.models import Channel
from channels_app.openapi import UNKNOWN_BOT_RESPONSE
from channels_app.serializers import KindChannelCreatedSerializer
from channels_app.services import channel_create_of_kind
from core.api import validated


class KindChannelCreateView(APIView):
    """Creates a channel of one native kind: its own fields are its package's serializer's."""

    kind: ChannelKind = None  # type: ignore[assignment]  # given by as_view(kind=...)
    # The same permission as the channels' API: `add_channel`.
    queryset = Channel.objects.none()

    def get_serializer_class(self) -> Any:
        return self.kind.create_serializer()

    def get_serializer(self, *args: Any, **kwargs: Any) -> Any:
        # The browsable API's form.
        return self.get_serializer_class()(*args, **kwargs)

    def post(self, request: Request) -> Response:
        serializer_class = self.kind.create_serializer()
        assert serializer_class is not None
        data = validated(serializer_class, request.data)
        channel = channel_create_of_kind(
            chat_bot=data["chat_bot_id"],
            name=data["name"],
            kind=self.kind.name,
            config=self.kind.configure(data),
            is_active=data.get("is_active", True),
        )
        problem = self.kind.after_save(channel)
        body = KindChannelCreatedSerializer(channel, context={"request": request}).data
        return Response({**body, "setup_problem": problem}, status=status.HTTP_201_CREATED)


def kind_create_view(kind: ChannelKind) -> Any:
    """The create view of `kind`, documented as its own operation."""
    view: Any = type(f"{kind.name.title()}ChannelCreateView", (KindChannelCreateView,), {"kind": kind})
    schema = extend_schema(
        operation_id=f"channels_kinds_{kind.name}_create",
        summary=f"Create a {kind.name} channel",
        tags=["channels"],
        request=kind.create_serializer(),
        responses={201: KindChannelCreatedSerializer, 404: UNKNOWN_BOT_RESPONSE},
    )
    return extend_schema_view(post=schema)(view).as_view()
