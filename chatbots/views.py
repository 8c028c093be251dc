from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from chatbots import openapi
from chatbots.models import ChatBot
from chatbots.serializers import (
    ChatBotCreatedSerializer,
    ChatBotInputSerializer,
    ChatBotRotatedSerializer,
    ChatBotSerializer,
    ChatBotWebhookSigningSecretSerializer,
    RotateTokenInputSerializer,
    WebhookSigningSecretRotateInputSerializer,
)
from chatbots.services import (
    chatbot_create,
    chatbot_delete,
    chatbot_rotate_secret,
    chatbot_update,
    chatbot_webhook_signing_secret_rotate,
)
from core.api import (
    ObjectIdLookupMixin,
    validated,
)
from core.pagination import OptionalLimitOffsetPagination


@openapi.chat_bot_schema
class ChatBotViewSet(
    ObjectIdLookupMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Bots. The secret is shown once, on create and on rotate; reads show its prefix."""

    serializer_class = ChatBotSerializer
    pagination_class = OptionalLimitOffsetPagination

    def get_serializer_class(self) -> Any:
        # The browsable API's forms (and their "Raw data") show what a write takes, its input
        # serializer, not the read shape (its read-only fields, and `id` and the dates in Raw
        # data); an update's form starts from the bot's current values. Writes validate with
        # the input serializers themselves: this only changes what the forms draw.
        if self.action in ("create", "update", "partial_update"):
            return ChatBotInputSerializer
        if self.action == "rotate_token":
            return RotateTokenInputSerializer
        if self.action == "rotate_webhook_signing_secret":
            return WebhookSigningSecretRotateInputSerializer
        return ChatBotSerializer

    def get_queryset(self) -> QuerySet[ChatBot]:
        return ChatBot.objects.order_by("-created_at", "-id")

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = validated(ChatBotInputSerializer, request.data)
        chat_bot, secret = chatbot_create(**data)
        chat_bot.secret_token = secret  # type: ignore[attr-defined]
        return Response(ChatBotCreatedSerializer(chat_bot).data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        chat_bot = self.get_object()
        data = validated(ChatBotInputSerializer, request.data)
        return Response(ChatBotSerializer(chatbot_update(chat_bot=chat_bot, **data)).data)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        chat_bot = self.get_object()
        data = validated(ChatBotInputSerializer, request.data, partial=True)
        return Response(ChatBotSerializer(chatbot_update(chat_bot=chat_bot, **data)).data)

    def perform_destroy(self, instance: ChatBot) -> None:
        chatbot_delete(chat_bot=instance)

    @action(detail=True, methods=["post"])
    def rotate_token(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        chat_bot = self.get_object()
        data = validated(RotateTokenInputSerializer, request.data)
        overlap = data.get("overlap_minutes")
        secret = chatbot_rotate_secret(chat_bot=chat_bot, overlap_s=None if overlap is None else overlap * 60)
        chat_bot.secret_token = secret
        return Response(ChatBotRotatedSerializer(chat_bot).data)

    @action(detail=True, methods=["post"])
    def rotate_webhook_signing_secret(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        chat_bot = self.get_object()
        data = validated(WebhookSigningSecretRotateInputSerializer, request.data)
        overlap = data.get("overlap_minutes") or 0
        chatbot_webhook_signing_secret_rotate(chat_bot=chat_bot, overlap_s=overlap * 60.0)
        return Response(ChatBotWebhookSigningSecretSerializer(chat_bot).data)
