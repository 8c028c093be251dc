"""The webhook kind: the existing contract. Customers' messages come to
`POST /api/webhook/new_message` (authenticated by the bot's secret); replies are POSTed to the
channel's URL with its token, signed (Standard Webhooks). Its endpoints, serializers and panel
predate the kinds and stay where they were (`dialogues.webhook`, `channels_app`)."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _

from channels_app.dispatch import AttemptOutcome, webhook_send, webhook_typing_send
from channels_app.kinds.base import ChannelKind
from channels_app.models import Channel


class WebhookKind(ChannelKind):
    name = "webhook"
    label = _("Webhook (our contract)")
    signed = True
    token_visible = True
    # The contract retries every failed attempt (docs/channels.md, "What to answer").
    permanent_is_final = False

    def send(
        self,
        *,
        channel: Channel,
        payload: dict[str, Any],
        idempotency_key: str,
        log_context: dict[str, Any],
        extra_headers: dict[str, str] | None = None,
    ) -> AttemptOutcome:
        return webhook_send(
            channel=channel,
            payload=payload,
            idempotency_key=idempotency_key,
            log_context=log_context,
            extra_headers=extra_headers,
        )

    def typing_send(
        self, *, channel: Channel, chat_id: str, state: str, log_context: dict[str, Any]
    ) -> AttemptOutcome | None:
        return webhook_typing_send(channel=channel, chat_id=chat_id, state=state, log_context=log_context)


KIND = WebhookKind()
