"""The dialogues API with the hand-off: the bot's pause in reads and list filters, `pause`,
`resume`, and operators' messages (`POST /api/dialogues/{id}/messages`). Registered in place of
`dialogues.views.DialogueViewSet`, whose reads it extends; each action validates, calls one
service of `dialogues.services_operators`, and serializes the result."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId
from django.db.models import QuerySet
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import query_params, validated
from dialogues import openapi_operators as openapi
from dialogues.models import Dialogue
from dialogues.selectors import DialoguePosition, dialogue_keyset, dialogue_list, dialogues_by_id, dialogues_by_pause
from dialogues.selectors_lists import paused_keyset
from dialogues.serializers import (
    DialogueHandoffFilterSerializer,
    DialogueHandoffSerializer,
    DialoguePauseSerializer,
    HistoryQuerySerializer,
    OperatorMessageRequestSerializer,
    OperatorMessageSerializer,
)
from dialogues.services_operators import dialogue_pause, dialogue_resume, operator_message_send
from dialogues.views import DialogueViewSet, history_response

PAUSE_FILTER_BATCH = 200


@openapi.dialogue_handoff_schema
class DialogueHandoffViewSet(DialogueViewSet):
    """Dialogues: written by the webhook; operators pause the bot and write to the customer."""

    serializer_class = DialogueHandoffSerializer

    def get_queryset(self) -> QuerySet[Dialogue]:
        if self.action != "list":
            return Dialogue.objects.all()
        filters = validated(DialogueHandoffFilterSerializer, query_params(self.request.query_params))
        paused = filters.pop("paused", None)
        dialogues = dialogue_list(**filters)
        if paused is not None:
            dialogues = dialogues_by_pause(dialogues, paused=paused)
        return dialogues.order_by("-last_message_at", "-id")

    def keyset_page(self, *, position: tuple[datetime | None, ObjectId] | None, newer: bool, count: int) -> list[Any]:
        """`paused=true`, going on: the paused dialogues on their own index
        (`paused_keyset`). Otherwise with `paused`, the list's dialogues read in batches
        (`dialogue_keyset`) and kept when their bot's state matches: a condition on the pause
        beside the list's own would leave its index on the embedded server. Bounded by the
        read budget."""
        filters = validated(DialogueHandoffFilterSerializer, query_params(self.request.query_params))
        paused = filters.pop("paused", None)
        if paused is None:
            return super().keyset_page(position=position, newer=newer, count=count)
        place = DialoguePosition(*position) if position is not None else None
        if paused and not newer and filters.get("chat_id") is None:
            bot, channel = filters.get("chat_bot_id"), filters.get("channel_id")
            places = paused_keyset(chat_bot_id=bot, channel_id=channel, position=place, count=count)
            if places is not None:
                return dialogues_by_id([p.id for p in places])
        kept: list[Dialogue] = []
        while len(kept) < count:
            places = dialogue_keyset(**filters, position=place, newer=newer, count=PAUSE_FILTER_BATCH)
            kept += [dialogue for dialogue in dialogues_by_id([p.id for p in places]) if dialogue.is_paused == paused]
            if len(places) < PAUSE_FILTER_BATCH:
                break
            place = places[-1]
        return kept[:count]

    @openapi.dialogue_messages_read_schema
    @openapi.dialogue_messages_send_schema
    @action(detail=True, methods=["get", "post"])
    def messages(self, request: Request, *args: Any, **kwargs: Any) -> Response:  # type: ignore[override]
        # (The stubs type an action by its class, so any override "differs" from its parent's.)
        dialogue = self.get_object()
        if request.method != "POST":
            query = validated(
                HistoryQuerySerializer, query_params(request.query_params), context={"dialogue": dialogue}
            )
            return history_response(
                dialogue=dialogue,
                chat_bot_id=dialogue.chat_bot_id,
                channel_id=dialogue.channel_id,
                chat_id=dialogue.chat_id,
                query=query,
            )
        data = validated(OperatorMessageRequestSerializer, request.data)
        message = operator_message_send(dialogue=dialogue, author=request.user, text=data["text"])
        return Response(OperatorMessageSerializer(message).data, status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"])
    def pause(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        dialogue = self.get_object()
        data = validated(DialoguePauseSerializer, request.data)
        dialogue = dialogue_pause(dialogue=dialogue, minutes=data.get("minutes"))
        return Response(DialogueHandoffSerializer(dialogue).data)

    @action(detail=True, methods=["post"])
    def resume(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        dialogue = dialogue_resume(dialogue=self.get_object())
        return Response(DialogueHandoffSerializer(dialogue).data)
