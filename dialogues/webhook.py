"""`POST /api/webhook/new_message`: channels deliver incoming messages here.

Authenticated by the bot's secret, never by session or CSRF. The body is read and parsed here
(not by DRF's parsers) so the size limit, strict JSON and error shapes are ours.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chatbots.models import ChatBot
from chatbots.services import (
    SIGNATURE_INVALID,
    SIGNATURE_REQUIRED,
    SIGNATURE_TIMESTAMP_INVALID,
    WEBHOOK_ID_REPLAYED,
    webhook_id_claim,
    webhook_id_release,
    webhook_signature_verify,
)
from core import metrics
from core.errors import ApplicationError
from core.ratelimit import webhook_auth_failed, webhook_auth_guard, webhook_bot_rate_check
from core.schema import WEBHOOK_SECURITY
from core.tracing import TRACEPARENT_HEADER, TRACESTATE_HEADER, TraceContext, trace_bound, trace_from_headers
from dialogues.ingest import webhook_bot_authenticate, webhook_message_process
from dialogues.serializers_webhook import (
    BODY_MAX_BYTES,
    WebhookErrorSerializer,
    WebhookMessageSerializer,
    WebhookResultSerializer,
)

logger = logging.getLogger("dialogues.webhook")

SUCCESS_STATUS = "Message processed successfully"
AUTH_HEADER_REQUIRED = "x-chatbot_auth_token header is required"
AUTH_HEADER_INVALID = "Invalid authorization header format, expected 'Bearer <token>'"
AUTH_TOKEN_INVALID = "Invalid token"  # noqa: S105 - a message, not a secret


class Unauthorized(ApplicationError):
    status = status.HTTP_401_UNAUTHORIZED


class PayloadTooLarge(ApplicationError):
    status = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE


MALFORMED_BODY = "Malformed request body: it could not be read as sent (Transfer-Encoding or Content-Length)"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def request_secret(request: Request) -> str:
    """The bot secret from `x-chatbot_auth_token` (the existing channels' header; WSGI maps it
    and `X-Chatbot-Auth-Token` to the same key), else from `Authorization`."""
    meta = request._request.META
    raw = meta.get("HTTP_X_CHATBOT_AUTH_TOKEN")
    if raw is None:
        raw = meta.get("HTTP_AUTHORIZATION")
    if raw is None:
        raise Unauthorized(AUTH_HEADER_REQUIRED)
    parts = raw.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        raise Unauthorized(AUTH_HEADER_INVALID)
    return parts[1]


def _read_body(django_request: Any, limit: int) -> bytes:
    meta = django_request.META
    try:
        if not meta.get("CONTENT_LENGTH") and "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower():
            # A chunked body has no Content-Length, so Django's request stream reads it as empty.
            # The WSGI server (gunicorn) decodes the chunks; read from it directly, bounded.
            stream = meta.get("wsgi.input")
            if stream is None:
                return b""
            chunks: list[bytes] = []
            size = 0
            while size < limit:
                chunk = stream.read(min(64 * 1024, limit - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            return b"".join(chunks)
        return bytes(django_request.read(limit))
    except Exception:
        # The server could not decode the body: a malformed chunk size or terminator, a body
        # shorter than announced, a client gone mid-body. gunicorn raises its own parse errors
        # (not OSError) from the stream; whatever the server, the body is unreadable: a 400.
        raise ApplicationError(MALFORMED_BODY) from None


def request_json_object(request: Request) -> dict[str, Any]:
    return json_object_parse(request_body(request))


def request_body(request: Request) -> bytes:
    """The raw body, exactly the bytes received (a signature is verified over them), bounded.
    Read once: a second call returns the same bytes."""
    cached = getattr(request, "_webhook_body", None)
    if cached is not None:
        return bytes(cached)
    django_request = request._request
    try:
        declared = int(django_request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise ApplicationError("Invalid Content-Length header") from None
    if declared > BODY_MAX_BYTES:
        raise PayloadTooLarge(f"Request body must be at most {BODY_MAX_BYTES} bytes")
    # Read at most one byte past the limit, whatever the header said.
    body = _read_body(django_request, BODY_MAX_BYTES + 1)
    if len(body) > BODY_MAX_BYTES:
        raise PayloadTooLarge(f"Request body must be at most {BODY_MAX_BYTES} bytes")
    request._webhook_body = body  # type: ignore[attr-defined]
    return body


def json_object_parse(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise ApplicationError("Request body is empty; a JSON object is required")
    try:
        payload = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApplicationError("Malformed JSON in request body") from None
    if not isinstance(payload, dict):
        raise ApplicationError("Request body must be a JSON object")
    return payload


_ERROR_EXAMPLES = {
    400: [
        OpenApiExample("Malformed JSON", value={"detail": "Malformed JSON in request body"}, status_codes=["400"]),
        OpenApiExample("Missing field", value={"chat_id": ["This field is required."]}, status_codes=["400"]),
        OpenApiExample(
            "Unknown sender", value={"message_sender": ['"robot" is not a valid choice.']}, status_codes=["400"]
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
    404: [OpenApiExample("Unknown channel", value={"detail": "Channel not found"}, status_codes=["404"])],
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


class WebhookNewMessageView(APIView):
    # Channels authenticate with the bot secret, checked in `post`; no session, so no CSRF.
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    renderer_classes = [JSONRenderer]
    # Declared for the schema only; the body is read by `request_json_object`.
    parser_classes = [JSONParser]
    throttle_classes: list[type] = []

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        # W3C Trace Context: a malformed traceparent is ignored (a new trace starts), never
        # answered 4xx, so tracing can never cost a channel its message. The trace id is on
        # every log line of the request, the webhook's own line included (finalize_response).
        self._trace: TraceContext = trace_from_headers(
            request.headers.get(TRACEPARENT_HEADER), request.headers.get(TRACESTATE_HEADER)
        )
        with trace_bound(self._trace):
            response = super().dispatch(request, *args, **kwargs)
        response[TRACEPARENT_HEADER] = self._trace.traceparent
        return response

    @extend_schema(
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
            )
        ],
    )
    def post(self, request: Request) -> Response:
        self._log_context: dict[str, Any] = {"started": time.monotonic()}
        payload = request_json_object(request) if self._content_too_large(request) else None
        secret = request_secret(request)
        # An address that failed too often is answered 429 before its secret is even hashed.
        failures_key = webhook_auth_guard(request._request)
        chat_bot: ChatBot | None = webhook_bot_authenticate(secret=secret)
        if chat_bot is None:
            webhook_auth_failed(failures_key)
            raise Unauthorized(AUTH_TOKEN_INVALID)
        self._log_context["bot"] = str(chat_bot.pk)
        # Counted from a per-process lease: a database round trip only every few hundred.
        webhook_bot_rate_check(str(chat_bot.pk))
        if not chat_bot.require_signed_webhooks:
            return self._accept(request, chat_bot, payload)
        # Verified over exactly the bytes received, before they are parsed; then the
        # `webhook-id` is claimed (one insert). Should the message then be refused (a 400 body)
        # or fail (the database), the claim is given back so the sender's retry, which carries
        # the same id, is not taken for a replay.
        webhook_id = webhook_signature_verify(chat_bot=chat_bot, body=request_body(request), headers=request.headers)
        webhook_id_claim(chat_bot=chat_bot, webhook_id=webhook_id)
        try:
            return self._accept(request, chat_bot, payload)
        except Exception:
            # Best effort: the request's own error is the answer, not a failed release.
            with contextlib.suppress(Exception):
                webhook_id_release(chat_bot=chat_bot, webhook_id=webhook_id)
            raise

    def _accept(self, request: Request, chat_bot: ChatBot, payload: dict[str, Any] | None) -> Response:
        if payload is None:
            payload = request_json_object(request)
        serializer = WebhookMessageSerializer(data=payload)
        if not serializer.is_valid():
            raise ValidationError(serializer.errors)
        data = serializer.validated_data
        self._log_context.update(
            chat_id=data["chat_id"],
            channel=data.get("channel_id") or data["chat_id"],
            message_id=data.get("message_id"),
        )
        result = webhook_message_process(
            chat_bot=chat_bot,
            chat_id=data["chat_id"],
            text=data["text"],
            message_sender=data["message_sender"],
            message_id=data.get("message_id"),
            channel_id=data.get("channel_id"),
            traceparent=self._trace.traceparent,
            tracestate=self._trace.tracestate,
        )
        self._log_context.update(message_id=result.message_id, outcome=result.outcome)
        return Response({"status": SUCCESS_STATUS, **result.as_dict()})

    @staticmethod
    def _content_too_large(request: Request) -> bool:
        """A body declared over the limit is refused before the secret is even looked up."""
        try:
            return int(request._request.META.get("CONTENT_LENGTH") or 0) > BODY_MAX_BYTES
        except ValueError:
            return True

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        context = getattr(self, "_log_context", None) or {}
        started = context.pop("started", None)
        status_code = getattr(response, "status_code", 0)
        metrics.webhook_request_observe(status=status_code, outcome=context.get("outcome"), started=started)
        # One line per webhook; ids only, never the text or a secret.
        logger.info(
            "webhook",
            extra={
                "bot": context.get("bot"),
                "channel": context.get("channel"),
                "chat_id": context.get("chat_id"),
                "message_id": context.get("message_id"),
                "outcome": context.get("outcome") or f"{'error' if status_code >= 500 else 'rejected'}_{status_code}",
                "status": status_code,
                "duration_ms": round((time.monotonic() - started) * 1000, 1) if started else None,
            },
        )
        return response
