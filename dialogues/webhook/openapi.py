"""The webhook's OpenAPI description and examples, kept apart from its view."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema

from chatbots.services import (
    SIGNATURE_INVALID,
    SIGNATURE_REQUIRED,
    SIGNATURE_TIMESTAMP_INVALID,
    WEBHOOK_ID_REPLAYED,
)
from core.schema import WEBHOOK_SECURITY
from dialogues.ingest import CHANNEL_NOT_FOUND
from dialogues.models import ATTACHMENTS_MAX
from dialogues.webhook.parsing import AUTH_HEADER_INVALID, AUTH_HEADER_REQUIRED, AUTH_TOKEN_INVALID
from dialogues.webhook.serializers import (
    BODY_MAX_BYTES,
    WebhookErrorSerializer,
    WebhookMessageSerializer,
    WebhookResultSerializer,
)

SUCCESS_STATUS = "Message processed successfully"


class WebhookMessageSchema(OpenApiSerializerExtension):
    """States what drf-spectacular leaves out of `WebhookMessageSerializer`: at most
    ATTACHMENTS_MAX attachments, and what `validate` requires beside the fields, `text` (not
    empty) or at least one attachment. Without it the schema would call a message with neither
    valid, and a client built from it would send what the server refuses."""

    target_class = "dialogues.webhook.serializers.WebhookMessageSerializer"

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema = super().map_serializer(auto_schema, direction)
        if direction == "request":
            schema["properties"]["attachments"]["maxItems"] = ATTACHMENTS_MAX
            schema["anyOf"] = [
                {"required": ["text"], "properties": {"text": {"minLength": 1}}},
                {"required": ["attachments"], "properties": {"attachments": {"minItems": 1}}},
            ]
        return schema


_ERROR_EXAMPLES = {
    400: [
        OpenApiExample("Malformed JSON", value={"detail": "Malformed JSON in request body"}, status_codes=["400"]),
        OpenApiExample("Missing field", value={"chat_id": ["This field is required."]}, status_codes=["400"]),
        OpenApiExample(
            "Unknown sender", value={"message_sender": ['"robot" is not a valid choice.']}, status_codes=["400"]
        ),
        OpenApiExample(
            "Attachment not https",
            value={
                "attachments[2].url": [
                    "Must be an https:// URL with a host, without credentials, spaces or control characters."
                ]
            },
            status_codes=["400"],
        ),
        OpenApiExample(
            "Neither text nor attachments", value={"text": ["This field is required."]}, status_codes=["400"]
        ),
    ],
    401: [
        OpenApiExample("No header", value={"detail": AUTH_HEADER_REQUIRED}, status_codes=["401"]),
        OpenApiExample("Bad format", value={"detail": AUTH_HEADER_INVALID}, status_codes=["401"]),
        OpenApiExample("Unknown secret", value={"detail": AUTH_TOKEN_INVALID}, status_codes=["401"]),
        OpenApiExample("Signature required", value={"detail": SIGNATURE_REQUIRED}, status_codes=["401"]),
        OpenApiExample("Bad signature", value={"detail": SIGNATURE_INVALID}, status_codes=["401"]),
        OpenApiExample("Stale timestamp", value={"detail": SIGNATURE_TIMESTAMP_INVALID}, status_codes=["401"]),
    ],
    404: [OpenApiExample("Unknown channel", value={"detail": CHANNEL_NOT_FOUND}, status_codes=["404"])],
    409: [
        OpenApiExample("Inactive channel", value={"detail": "Channel is inactive"}, status_codes=["409"]),
        OpenApiExample("Replayed webhook-id", value={"detail": WEBHOOK_ID_REPLAYED}, status_codes=["409"]),
        OpenApiExample(
            "Dialogue limit reached",
            value={
                "detail": "This bot has reached its limit of 100000 dialogues opened through channel_id; "
                "messages into its existing dialogues are still accepted"
            },
            status_codes=["409"],
        ),
    ],
    429: [
        OpenApiExample(
            "Bot over WEBHOOK_BOT_RATE",
            value={"detail": "Too many webhook requests for this bot. Expected available in 12 seconds."},
            status_codes=["429"],
        )
    ],
    413: [
        OpenApiExample(
            "Too large", value={"detail": f"Request body must be at most {BODY_MAX_BYTES} bytes"}, status_codes=["413"]
        )
    ],
}


new_message_schema = extend_schema(
    operation_id="webhook_new_message",
    summary="Receive a message from a channel",
    description=(
        "Stores the message and answers at once. For `customer` messages a worker then asks the "
        "LLM and delivers the reply to the channel's URL (POST with `x-chat_auth_token: Bearer "
        "<channel token>` and a `webhook-id` header that stays the same on every retry). A "
        "repeated `message_id` is answered 200 without storing or replying again. With "
        "`WEBHOOK_REPLY_WAIT_MS` set, the answer waits at most that long for the reply's outcome.\n\n"
        "Tracing: an optional W3C `traceparent` header (version `00`; `tracestate` too, up to 512 "
        "characters) is kept with the message and continued by its reply: the reply's POST to the "
        "channel and the LLM call carry the same trace id. A missing or malformed `traceparent` is "
        "ignored, never an error: the message starts a new trace. Every answer carries a "
        "`traceparent` header naming this request's span.\n\n"
        "Signed requests: for a bot with `require_signed_webhooks`, every request must also carry a "
        "[Standard Webhooks](https://www.standardwebhooks.com/) signature made with the bot's webhook "
        "signing secret over the exact body bytes: `webhook-id`, `webhook-timestamp` (Unix seconds, within "
        "5 minutes of the server's clock) and `webhook-signature: v1,<base64 HMAC-SHA256>`. Missing, invalid "
        "or stale: 401. A `webhook-id` already accepted for the bot in the last 10 minutes is a replay: 409, "
        "nothing stored (an id whose request failed, e.g. 400 or 503, may be retried).\n\n"
        "Attachments: optional `attachments`, up to 10 files by link (`url`: https, at most 2048 characters; "
        "optional `mime_type` as `type/subtype`, `name` up to 255 characters, `size` in bytes up to 2 GiB). With "
        "attachments `text` may be left out or empty; without, it is required. An invalid attachment is a 400 "
        "naming it by its path, e.g. `attachments[2].url`. The files are never fetched by this server; for a bot "
        "with `vision`, the LLM's provider is given the URLs of png, jpeg, gif and webp images.\n\n"
        "Rate: at most `WEBHOOK_BOT_RATE` requests per bot across all processes; over it, 429 with "
        "`Retry-After`."
    ),
    tags=["webhook"],
    # The bot's secret: `x-chatbot_auth_token: Bearer <secret>` or `Authorization: Bearer
    # <secret>` (the schemes are declared in core.schema).
    # drf-spectacular uses `auth` as the operation's security requirements, as given; its
    # annotation (a list of str) is narrower than what it accepts.
    auth=WEBHOOK_SECURITY,  # type: ignore[arg-type]
    request=WebhookMessageSerializer,
    responses={
        200: OpenApiResponse(
            WebhookResultSerializer,
            description="Stored (or a duplicate).",
            examples=[
                OpenApiExample(
                    "Stored, reply owed",
                    value={
                        "status": SUCCESS_STATUS,
                        "message_id": "m-1",
                        "dialogue_id": "6650f0c2a1b2c3d4e5f60718",
                        "duplicate": False,
                        "ignored": False,
                        "replied": False,
                        "reply_pending": True,
                        "reply_message_id": None,
                        "delivery": None,
                        "resumed": False,
                    },
                    status_codes=["200"],
                ),
                OpenApiExample(
                    "Replied within WEBHOOK_REPLY_WAIT_MS",
                    value={
                        "status": SUCCESS_STATUS,
                        "message_id": "m-1",
                        "dialogue_id": "6650f0c2a1b2c3d4e5f60718",
                        "duplicate": False,
                        "ignored": False,
                        "replied": True,
                        "reply_pending": False,
                        "reply_message_id": "2f1c4a9e-3a57-4a0e-9b1e-6f0b2d1f7c11",
                        "delivery": "delivered",
                        "resumed": False,
                    },
                    status_codes=["200"],
                ),
            ],
        ),
        400: OpenApiResponse(
            OpenApiTypes.OBJECT, description="Malformed or invalid body.", examples=_ERROR_EXAMPLES[400]
        ),
        401: OpenApiResponse(
            WebhookErrorSerializer,
            description="Missing or wrong secret; for a bot with `require_signed_webhooks`, a missing or "
            "invalid signature, or a `webhook-timestamp` more than 5 minutes off.",
            examples=_ERROR_EXAMPLES[401],
        ),
        404: OpenApiResponse(
            WebhookErrorSerializer, description="No such channel for this bot.", examples=_ERROR_EXAMPLES[404]
        ),
        409: OpenApiResponse(
            WebhookErrorSerializer,
            description="The channel is inactive; or, for a bot with `require_signed_webhooks`, this "
            "`webhook-id` was already accepted (a replay: nothing is stored); or the message would open a "
            "dialogue through `channel_id` past the bot's WEBHOOK_MAX_DIALOGUES_PER_BOT (nothing is stored; "
            "messages into existing dialogues are still accepted).",
            examples=_ERROR_EXAMPLES[409],
        ),
        413: OpenApiResponse(WebhookErrorSerializer, description="Body over 1 MiB.", examples=_ERROR_EXAMPLES[413]),
        429: OpenApiResponse(
            WebhookErrorSerializer,
            description="Too many requests: the bot is over `WEBHOOK_BOT_RATE`, or this address failed "
            "authentication too often (`WEBHOOK_AUTH_FAILURE_RATE`). `Retry-After` says when to retry.",
            examples=_ERROR_EXAMPLES[429],
        ),
        503: OpenApiResponse(WebhookErrorSerializer, description="Database unavailable; retry."),
    },
    examples=[
        OpenApiExample(
            "Customer message",
            value={
                "message_id": "m-1",
                "chat_id": "6650f0c2a1b2c3d4e5f60718",
                "text": "Hello",
                "message_sender": "customer",
            },
            request_only=True,
        ),
        OpenApiExample(
            "Customer message with a photo",
            value={
                "message_id": "m-2",
                "chat_id": "6650f0c2a1b2c3d4e5f60718",
                "text": "It arrived like this",
                "attachments": [
                    {
                        "url": "https://files.example.com/u/42/photo.jpg",
                        "mime_type": "image/jpeg",
                        "name": "photo.jpg",
                        "size": 183204,
                    }
                ],
                "message_sender": "customer",
            },
            request_only=True,
        ),
        OpenApiExample(
            "Files only",
            value={
                "message_id": "m-3",
                "chat_id": "6650f0c2a1b2c3d4e5f60718",
                "attachments": [{"url": "https://files.example.com/u/42/invoice.pdf", "mime_type": "application/pdf"}],
                "message_sender": "customer",
            },
            request_only=True,
        ),
    ],
)
