from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import (
    AUTH_ERRORS,
    BAD_REQUEST,
    CONFLICT,
    NOT_FOUND,
    OBJECT_ID_PATH_PARAMETER,
    ObjectIdLookupMixin,
    validated,
)
from core.pagination import OptionalLimitOffsetPagination
from llm.models import LLMProvider
from llm.providers import llm_provider_create, llm_provider_delete, llm_provider_update
from llm.serializers import LLMProviderInputSerializer, LLMProviderSerializer

_DETAIL = [OBJECT_ID_PATH_PARAMETER]
_EXAMPLE = {
    "id": "665f1c2e9b1e8a3d4c5b6a80",
    "name": "Tenant's OpenAI",
    "base_url": "https://api.openai.com/v1",
    "has_api_key": True,
    "max_concurrent": 50,
    "requests_per_minute": 600,
    "tokens_per_minute": None,
    "created_at": "2025-01-31T12:00:00Z",
    "updated_at": "2025-01-31T12:00:00Z",
}


@extend_schema_view(
    list=extend_schema(
        summary="List LLM providers",
        description="A plain JSON array, by name; `limit`/`offset` switch to a paginated envelope.",
        responses={200: LLMProviderSerializer(many=True), 400: BAD_REQUEST, **AUTH_ERRORS},
    ),
    retrieve=extend_schema(
        summary="Get an LLM provider",
        parameters=_DETAIL,
        responses={200: LLMProviderSerializer, 404: NOT_FOUND, **AUTH_ERRORS},
        examples=[OpenApiExample("Provider", value=_EXAMPLE, response_only=True)],
    ),
    destroy=extend_schema(
        summary="Delete an LLM provider",
        description="Refused (409) while a bot names it.",
        parameters=_DETAIL,
        responses={204: None, 404: NOT_FOUND, 409: CONFLICT, **AUTH_ERRORS},
    ),
)
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
        return LLMProviderSerializer

    def get_queryset(self) -> QuerySet[LLMProvider]:
        return LLMProvider.objects.order_by("name", "id")

    @extend_schema(
        summary="Create an LLM provider",
        request=LLMProviderInputSerializer,
        responses={201: LLMProviderSerializer, 400: BAD_REQUEST, 409: CONFLICT, **AUTH_ERRORS},
        examples=[
            OpenApiExample(
                "Create",
                value={"name": "Tenant's OpenAI", "base_url": "https://api.openai.com/v1", "api_key": "sk-..."},
                request_only=True,
            ),
            OpenApiExample("Created", value=_EXAMPLE, response_only=True, status_codes=["201"]),
        ],
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        provider = llm_provider_create(**validated(LLMProviderInputSerializer, request.data))
        return Response(LLMProviderSerializer(provider).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Update an LLM provider",
        description="The name and base URL, and any other field given; the API key, left out, is kept.",
        parameters=_DETAIL,
        request=LLMProviderInputSerializer,
        responses={200: LLMProviderSerializer, 400: BAD_REQUEST, 404: NOT_FOUND, 409: CONFLICT, **AUTH_ERRORS},
    )
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        provider = self.get_object()
        data = validated(LLMProviderInputSerializer, request.data)
        return Response(LLMProviderSerializer(llm_provider_update(provider=provider, **data)).data)

    @extend_schema(
        summary="Update an LLM provider (partial)",
        description="Only the fields given change (`api_key` replaces the key).",
        parameters=_DETAIL,
        request=LLMProviderInputSerializer,
        responses={200: LLMProviderSerializer, 400: BAD_REQUEST, 404: NOT_FOUND, 409: CONFLICT, **AUTH_ERRORS},
    )
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        provider = self.get_object()
        data = validated(LLMProviderInputSerializer, request.data, partial=True)
        return Response(LLMProviderSerializer(llm_provider_update(provider=provider, **data)).data)

    def perform_destroy(self, instance: LLMProvider) -> None:
        llm_provider_delete(provider=instance)
