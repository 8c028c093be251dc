"""The OpenAPI descriptions and examples of chatbots's API views, kept apart from the views."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view

from chatbots.serializers import (
    UNKNOWN_LLM_PROVIDER,
    ChatBotCreatedSerializer,
    ChatBotInputSerializer,
    ChatBotRotatedSerializer,
    ChatBotSerializer,
    ChatBotWebhookSigningSecretSerializer,
    RotateTokenInputSerializer,
    WebhookSigningSecretRotateInputSerializer,
)
from core.api import (
    AUTH_ERRORS,
    BAD_REQUEST,
    CONFLICT,
    NOT_FOUND,
    OBJECT_ID_PATH_PARAMETER,
)

_BOT_EXAMPLE = {
    "id": "665f1c2e9b1e8a3d4c5b6a79",
    "name": "Support bot",
    "secret_prefix": "cbs_Qm7d0X",
    "require_signed_webhooks": False,
    "created_at": "2025-01-31T12:00:00Z",
    "updated_at": "2025-01-31T12:00:00Z",
}
_SECRET_EXAMPLE = {**_BOT_EXAMPLE, "secret_token": "cbs_Qm7d0XkV3yq9b2Vw2r6i1o8sPpZcYtN0aLhEe5fUuJg"}
_SIGNING_EXAMPLE = {"webhook_signing_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw6n3oH1hRyDE="}
_DETAIL = [OBJECT_ID_PATH_PARAMETER]
# A valid body whose llm_provider_id is well formed but no provider's.
_UNKNOWN_PROVIDER = OpenApiResponse(
    response=NOT_FOUND.response,
    description="The body is valid, but `llm_provider_id` is no existing LLM provider's id: the field is named.",
    examples=[
        OpenApiExample("Unknown provider", value={"llm_provider_id": [UNKNOWN_LLM_PROVIDER]}, response_only=True)
    ],
)


chat_bot_schema = extend_schema_view(
    list=extend_schema(
        summary="List bots",
        description="A plain JSON array, newest first; `limit`/`offset` switch to a paginated envelope.",
        responses={200: ChatBotSerializer(many=True), 400: BAD_REQUEST, **AUTH_ERRORS},
    ),
    retrieve=extend_schema(
        summary="Get a bot",
        parameters=_DETAIL,
        responses={200: ChatBotSerializer, 404: NOT_FOUND, **AUTH_ERRORS},
        examples=[OpenApiExample("Bot", value=_BOT_EXAMPLE, response_only=True)],
    ),
    destroy=extend_schema(
        summary="Delete a bot",
        description="Deletes the bot **together with its channels, their dialogues and all their messages**. "
        "They cannot outlive the bot: nothing could authenticate to them any more. Not reversible.",
        parameters=_DETAIL,
        responses={204: None, 404: NOT_FOUND, **AUTH_ERRORS},
    ),
    create=extend_schema(
        summary="Create a bot",
        description="The server generates the bot's secret, shown in this response only (`secret_token`); reads "
        "show its prefix. The bot's channels send it to the webhook with every message from a customer or an "
        "employee.",
        request=ChatBotInputSerializer,
        responses={201: ChatBotCreatedSerializer, 400: BAD_REQUEST, 404: _UNKNOWN_PROVIDER, **AUTH_ERRORS},
        examples=[
            OpenApiExample("Create", value={"name": "Support bot"}, request_only=True),
            OpenApiExample(
                "Created", value={**_SECRET_EXAMPLE, **_SIGNING_EXAMPLE}, response_only=True, status_codes=["201"]
            ),
        ],
    ),
    update=extend_schema(
        summary="Update a bot",
        description="The name, and any settings given; settings left out keep their value.",
        parameters=_DETAIL,
        request=ChatBotInputSerializer,
        responses={200: ChatBotSerializer, 400: BAD_REQUEST, 404: NOT_FOUND, **AUTH_ERRORS},
    ),
    partial_update=extend_schema(
        summary="Update a bot (partial)",
        description="Only the fields given change.",
        parameters=_DETAIL,
        request=ChatBotInputSerializer,
        responses={200: ChatBotSerializer, 400: BAD_REQUEST, 404: NOT_FOUND, **AUTH_ERRORS},
    ),
    rotate_token=extend_schema(
        summary="Rotate a bot's secret",
        description="Replaces the secret. The new secret is shown in this response only. With "
        "`overlap_minutes`, the old secret keeps working that long (until `previous_secret_until`), so "
        "channels can switch over without losing messages; without it, the server's default applies "
        "(`BOT_SECRET_OVERLAP_S`, 0 unless configured: the old secret stops working at once, within the "
        "webhook's auth cache time, `AUTH_CACHE_TTL_S`). Only one previous secret is kept. Two rotations "
        "of one bot at the same moment: one wins, the other answers 409.",
        parameters=_DETAIL,
        request=RotateTokenInputSerializer,
        responses={
            200: ChatBotRotatedSerializer,
            400: BAD_REQUEST,
            404: NOT_FOUND,
            409: CONFLICT,
            **AUTH_ERRORS,
        },
        examples=[
            OpenApiExample("Rotate with a day's overlap", value={"overlap_minutes": 1440}, request_only=True),
            OpenApiExample(
                "Rotated",
                value={**_SECRET_EXAMPLE, "previous_secret_until": "2025-02-01T12:00:00Z"},
                response_only=True,
            ),
        ],
    ),
    rotate_webhook_signing_secret=extend_schema(
        summary="Rotate a bot's webhook signing secret",
        description="Generates a new Standard Webhooks signing secret for the bot's inbound webhook requests and "
        "returns the bot with it (the only time it is shown; the create response shows the first one). With "
        "`overlap_minutes`, signatures made with the replaced secret are accepted that long too (until "
        "`previous_webhook_signing_secret_until`), so channels can switch without a rejected message; without "
        "it, the old secret stops at once (within `AUTH_CACHE_TTL_S`). Two rotations at the same moment: one "
        "wins, the other answers 409. Needs the permission to change bots.",
        parameters=_DETAIL,
        request=WebhookSigningSecretRotateInputSerializer,
        responses={
            200: ChatBotWebhookSigningSecretSerializer,
            400: BAD_REQUEST,
            404: NOT_FOUND,
            409: CONFLICT,
            **AUTH_ERRORS,
        },
        examples=[
            OpenApiExample("Rotate with an hour's overlap", value={"overlap_minutes": 60}, request_only=True),
            OpenApiExample(
                "Rotated",
                value={**_BOT_EXAMPLE, **_SIGNING_EXAMPLE, "previous_webhook_signing_secret_until": None},
                response_only=True,
            ),
        ],
    ),
)
