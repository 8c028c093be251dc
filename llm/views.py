from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework import mixins, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import ObjectIdLookupMixin, validated
from core.pagination import OptionalLimitOffsetPagination
from llm import openapi
from llm.models import LLMProvider
from llm.providers import llm_provider_create, llm_provider_delete, llm_provider_update
from llm.serializers import LLMProviderDetailSerializer, LLMProviderInputSerializer, LLMProviderSerializer


@openapi.llm_provider_schema
class LLMProviderViewSet(
    ObjectIdLookupMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """LLM providers: servers speaking OpenAI's chat-completions protocol that bots name
    (`llm_provider_id`). The API key is write-only."""

    serializer_class = LLMProviderSerializer
    pagination_class = OptionalLimitOffsetPagination

    def get_serializer_class(self) -> Any:
        if self.action in ("create", "update", "partial_update"):
            return LLMProviderInputSerializer
        if self.action == "retrieve":
            return LLMProviderDetailSerializer
        return LLMProviderSerializer

    def get_queryset(self) -> QuerySet[LLMProvider]:
        return LLMProvider.objects.order_by("name", "id")

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        provider = llm_provider_create(**validated(LLMProviderInputSerializer, request.data))
        return Response(LLMProviderSerializer(provider).data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        provider = self.get_object()
        data = validated(LLMProviderInputSerializer, request.data)
        return Response(LLMProviderSerializer(llm_provider_update(provider=provider, **data)).data)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        provider = self.get_object()
        data = validated(LLMProviderInputSerializer, request.data, partial=True)
        return Response(LLMProviderSerializer(llm_provider_update(provider=provider, **data)).data)

    def perform_destroy(self, instance: LLMProvider) -> None:
        llm_provider_delete(provider=instance)
