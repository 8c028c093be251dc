"""`POST /api/webhook/new_message`: channels deliver incoming messages here.

Authenticated by the bot's secret, never by session or CSRF. The body is read and parsed by
`dialogues.webhook.parsing` (not by DRF's parsers) so the size limit, strict JSON and error
shapes are ours.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chatbots.models import ChatBot
from chatbots.services import webhook_id_claim, webhook_id_release, webhook_signature_verify
from core import metrics
from core.ratelimit import webhook_auth_failed, webhook_auth_guard, webhook_bot_rate_check
from core.tracing import TRACEPARENT_HEADER, TRACESTATE_HEADER, TraceContext, trace_bound, trace_from_headers
from dialogues.ingest import webhook_bot_authenticate, webhook_message_process
from dialogues.webhook.openapi import SUCCESS_STATUS, new_message_schema
from dialogues.webhook.parsing import (
    AUTH_TOKEN_INVALID,
    Unauthorized,
    content_too_large,
    request_body,
    request_json_object,
    request_secret,
)
from dialogues.webhook.serializers import WebhookMessageSerializer, field_errors

# The logger keeps the name operators configure (LOG_CONFIG) and filter on.
logger = logging.getLogger("dialogues.webhook")


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

    @new_message_schema
    def post(self, request: Request) -> Response:
        self._log_context: dict[str, Any] = {"started": time.monotonic()}
        payload = request_json_object(request) if content_too_large(request) else None
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
            raise ValidationError(field_errors(serializer.errors))
        data = serializer.validated_data
        self._log_context.update(
            chat_id=data["chat_id"],
            channel=data.get("channel_id") or data["chat_id"],
            message_id=data.get("message_id"),
        )
        result = webhook_message_process(
            chat_bot=chat_bot,
            chat_id=data["chat_id"],
            text=data.get("text", ""),
            attachments=data.get("attachments") or [],
            message_sender=data["message_sender"],
            message_id=data.get("message_id"),
            channel_id=data.get("channel_id"),
            traceparent=self._trace.traceparent,
            tracestate=self._trace.tracestate,
        )
        self._log_context.update(message_id=result.message_id, outcome=result.outcome)
        return Response({"status": SUCCESS_STATUS, **result.as_dict()})

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
