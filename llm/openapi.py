"""The OpenAPI descriptions and examples of the LLM providers' API views, kept apart from the views."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view

from core.api import AUTH_ERRORS, BAD_REQUEST, CONFLICT, NOT_FOUND, OBJECT_ID_PATH_PARAMETER
from llm.serializers import LLMProviderDetailSerializer, LLMProviderInputSerializer, LLMProviderSerializer

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
_USAGE = {"calls_in_flight": 12, "requests_last_minute": 410, "tokens_last_minute": 96000, "blocked_until": None}
_WRITE_ERRORS = {400: BAD_REQUEST, 404: NOT_FOUND, 409: CONFLICT, **AUTH_ERRORS}

llm_provider_schema = extend_schema_view(
    list=extend_schema(
        summary="List LLM providers",
        description="A plain JSON array, by name; `limit`/`offset` switch to a paginated envelope.",
        responses={200: LLMProviderSerializer(many=True), 400: BAD_REQUEST, **AUTH_ERRORS},
    ),
    retrieve=extend_schema(
        summary="Get an LLM provider",
        parameters=_DETAIL,
        description="With its current use (`usage`), from every worker process, against its limits.",
        responses={200: LLMProviderDetailSerializer, 404: NOT_FOUND, **AUTH_ERRORS},
        examples=[OpenApiExample("Provider", value={**_EXAMPLE, "usage": _USAGE}, response_only=True)],
    ),
    destroy=extend_schema(
        summary="Delete an LLM provider",
        description="Refused (409) while a bot names it.",
        parameters=_DETAIL,
        responses={204: None, 404: NOT_FOUND, 409: CONFLICT, **AUTH_ERRORS},
    ),
    create=extend_schema(
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
    ),
    update=extend_schema(
        summary="Update an LLM provider",
        description="The name and base URL, and any other field given; the API key, left out, is kept.",
        parameters=_DETAIL,
        request=LLMProviderInputSerializer,
        responses={200: LLMProviderSerializer, **_WRITE_ERRORS},
    ),
    partial_update=extend_schema(
        summary="Update an LLM provider (partial)",
        description="Only the fields given change (`api_key` replaces the key).",
        parameters=_DETAIL,
        request=LLMProviderInputSerializer,
        responses={200: LLMProviderSerializer, **_WRITE_ERRORS},
    ),
)
