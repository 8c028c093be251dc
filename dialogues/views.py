from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId
from django.db.models import QuerySet
from rest_framework import generics, mixins, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from channels_app.models import Channel
from core.api import (
    ObjectIdLookupMixin,
    query_params,
    validated,
)
from core.pagination import KeysetCursorPagination
from core.permissions import StaffModelPermissions
from dialogues import openapi
from dialogues.models import Dialogue
from dialogues.selectors import (
    DialoguePosition,
    dialogue_for_channel,
    dialogue_keyset,
    dialogue_list,
    dialogues_by_id,
    message_page,
)
from dialogues.serializers import (
    DialogueFilterSerializer,
    DialogueHistorySerializer,
    DialogueSerializer,
    HistoryQuerySerializer,
)


def history_response(
    *, dialogue: Dialogue | None, chat_bot_id: Any, channel_id: Any, chat_id: str, query: dict[str, Any]
) -> Response:
    """One page of a dialogue's history; `dialogue` None means nothing was said yet."""
    if dialogue is None:
        messages, has_more = [], False
    else:
        page = message_page(
            dialogue=dialogue, before=query.get("before"), after=query.get("after"), limit=query["limit"]
        )
        messages, has_more = page.messages, page.has_more
    body = {
        "id": dialogue.pk if dialogue is not None else None,
        "chat_bot_id": chat_bot_id,
        "channel_id": channel_id,
        "chat_id": chat_id,
        "message_list": messages,
        "has_more": has_more,
    }
    return Response(DialogueHistorySerializer(body).data)


# Routed as `dialogues.views_operators.DialogueHandoffViewSet`, which adds the hand-off and
# documents the reads with it (one schema for one route).
@openapi.dialogue_schema
class DialogueViewSet(ObjectIdLookupMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Dialogues, read-only: they are written by the webhook."""

    serializer_class = DialogueSerializer
    # Paginated by default: a bot can hold any number of dialogues. Keyed on the list's own
    # order, the most recently active first, the id breaking ties.
    pagination_class = KeysetCursorPagination

    def get_queryset(self) -> QuerySet[Dialogue]:
        if self.action != "list":
            return Dialogue.objects.all()
        filters = validated(DialogueFilterSerializer, query_params(self.request.query_params))
        return dialogue_list(**filters).order_by("-last_message_at", "-id")

    def keyset_page(self, *, position: tuple[datetime | None, ObjectId] | None, newer: bool, count: int) -> list[Any]:
        """The list's page for `KeysetCursorPagination`, read in bounded index ranges
        (`dialogue_keyset`), then the dialogues by id."""
        filters = validated(DialogueFilterSerializer, query_params(self.request.query_params))
        places = dialogue_keyset(
            **filters,
            position=DialoguePosition(*position) if position is not None else None,
            newer=newer,
            count=count,
        )
        return dialogues_by_id([place.id for place in places])

    @action(detail=True, methods=["get"])
    def messages(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        dialogue = self.get_object()
        query = validated(HistoryQuerySerializer, query_params(request.query_params), context={"dialogue": dialogue})
        return history_response(
            dialogue=dialogue,
            chat_bot_id=dialogue.chat_bot_id,
            channel_id=dialogue.channel_id,
            chat_id=dialogue.chat_id,
            query=query,
        )


class ChannelDialoguePermissions(StaffModelPermissions):
    """The channel's history is a dialogue's transcript: it needs the dialogue's view
    permission, as `/api/dialogues/{id}/messages` does, besides the channel's."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user: Any = request.user
        return super().has_permission(request, view) and bool(user.has_perm("dialogues.view_dialogue"))


@openapi.channel_dialogue_schema
class ChannelDialogueView(ObjectIdLookupMixin, generics.GenericAPIView):
    """`GET /api/channels/{id}/dialogue`: the existing contract's history of a channel. It
    returns a dialogue, so it lives here, with the dialogues (the channel app knows nothing of
    them)."""

    queryset = Channel.objects.all()
    permission_classes = [ChannelDialoguePermissions]

    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        channel = self.get_object()
        dialogue = dialogue_for_channel(channel=channel)
        query = validated(HistoryQuerySerializer, query_params(request.query_params), context={"dialogue": dialogue})
        return history_response(
            dialogue=dialogue,
            chat_bot_id=channel.chat_bot_id,
            channel_id=channel.pk,
            chat_id=str(channel.pk),
            query=query,
        )
