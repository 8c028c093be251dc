"""The Telegram kind: a bot of the Telegram Bot API as a channel. Customers' messages arrive by
the bot's webhook (`views`), replies and operators' messages go out by `sendMessage`."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.urls import URLPattern, URLResolver, path, reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _
from pymongo.errors import PyMongoError
from rest_framework import serializers

from channels_app.dispatch import ERROR_MAX_LENGTH, TYPING_DEADLINE_S, AttemptOutcome
from channels_app.kinds.base import ChannelKind, KindConfig
from channels_app.kinds.forms import KindChannelForm
from channels_app.kinds.telegram import progress
from channels_app.kinds.telegram.client import (
    ALLOWED_UPDATES,
    answer_ok,
    answer_problem,
    bot_call,
    call_outcome,
    chat_id_value,
)
from channels_app.kinds.telegram.config import secret_token_generate, telegram_config
from channels_app.kinds.telegram.splitting import text_split
from channels_app.kinds.telegram.views import KIND_NAME, TelegramUpdatesView
from channels_app.models import Channel

logger = logging.getLogger(__name__)

UPDATES_ROUTE = "channel-kind-telegram-updates"
WEBHOOK_BASE_MISSING = (
    "The webhook was not registered: TELEGRAM_WEBHOOK_BASE_URL (this platform's public https address, "
    "which Telegram posts updates to) is not set."
)
# Below this much of the attempt's deadline left, the next part waits for the retry.
_PART_MIN_S = 0.2


def webhook_url(channel: Channel) -> str:
    """Where Telegram posts this channel's updates; "" when the platform's public address is not
    configured."""
    base = str(settings.TELEGRAM_WEBHOOK_BASE_URL).rstrip("/")
    if not base:
        return ""
    return base + reverse(UPDATES_ROUTE, kwargs={"channel_id": str(channel.pk)})


def _failed(error: str, *, elapsed_ms: float, status_code: int | None = None) -> AttemptOutcome:
    return AttemptOutcome(
        ok=False, status_code=status_code, error=error, permanent=False, retry_after_s=None, elapsed_ms=elapsed_ms
    )


class TelegramKind(ChannelKind):
    name = KIND_NAME
    label = _("Telegram bot")
    # Telegram's API is not ours to sign for; the bot token in the URL authenticates us.
    signed = False
    token_visible = False

    # --- outbound -------------------------------------------------------------------------

    def send(
        self,
        *,
        channel: Channel,
        payload: dict[str, Any],
        idempotency_key: str,
        log_context: dict[str, Any],
        extra_headers: dict[str, str] | None = None,
    ) -> AttemptOutcome:
        parts = text_split(str(payload.get("text") or ""))
        chat_id = chat_id_value(str(payload.get("chat_id", "")))
        started = time.monotonic()
        deadline = started + settings.CHANNEL_ATTEMPT_TIMEOUT_S
        if len(parts) == 1:
            return self._send_part(channel, chat_id, parts[0], log_context, deadline_s=None)
        try:
            done = progress.parts_sent(idempotency_key)
        except (DatabaseError, PyMongoError):
            # Sending without knowing what was sent could repeat a part: wait for the retry.
            return _failed("Split reply's progress unavailable (database)", elapsed_ms=0.0)
        total = len(parts)
        outcome: AttemptOutcome | None = None
        for index in range(done, total):
            remaining = deadline - time.monotonic()
            if remaining < _PART_MIN_S:
                return _failed(
                    f"Timed out after part {index} of {total}",
                    elapsed_ms=round((time.monotonic() - started) * 1000, 1),
                )
            outcome = self._send_part(
                channel, chat_id, parts[index], {**log_context, "part": index + 1, "parts": total}, remaining
            )
            if not outcome.ok:
                outcome.error = f"Part {index + 1} of {total}: {outcome.error}"[:ERROR_MAX_LENGTH]
                outcome.elapsed_ms = round((time.monotonic() - started) * 1000, 1)
                return outcome
            try:
                progress.parts_sent_record(idempotency_key, sent=index + 1, total=total)
            except (DatabaseError, PyMongoError):
                # The parts already sent would be sent again by a retry after a later failure;
                # better that than holding the reply up for a write.
                logger.warning("telegram split progress not recorded", extra={**log_context, "part": index + 1})
        if outcome is None:  # every part was sent by an earlier attempt
            return AttemptOutcome(
                ok=True, status_code=200, error="", permanent=False, retry_after_s=None, elapsed_ms=0.0
            )
        outcome.elapsed_ms = round((time.monotonic() - started) * 1000, 1)
        return outcome

    def _send_part(
        self,
        channel: Channel,
        chat_id: int | str,
        text: str,
        log_context: dict[str, Any],
        deadline_s: float | None,
    ) -> AttemptOutcome:
        answer = bot_call(
            api_base=channel.settings.url,
            token=channel.settings.token,
            method="sendMessage",
            body={"chat_id": chat_id, "text": text},
            log_context=log_context,
            deadline_s=deadline_s,
        )
        return call_outcome(answer)

    def typing_send(
        self, *, channel: Channel, chat_id: str, state: str, log_context: dict[str, Any]
    ) -> AttemptOutcome | None:
        # Telegram shows "typing…" for 5 s or until the next message: there is no "off".
        if state != "on":
            return None
        answer = bot_call(
            api_base=channel.settings.url,
            token=channel.settings.token,
            method="sendChatAction",
            body={"chat_id": chat_id_value(chat_id), "action": "typing"},
            log_context=log_context,
            deadline_s=min(TYPING_DEADLINE_S, settings.CHANNEL_ATTEMPT_TIMEOUT_S),
        )
        return call_outcome(answer)

    def test_send(self, *, channel: Channel, log_context: dict[str, Any]) -> AttemptOutcome:
        """getMe: the token is valid and the Bot API reachable (a bot cannot message someone who
        never wrote to it, so there is nobody to send a test message to)."""
        answer = bot_call(
            api_base=channel.settings.url,
            token=channel.settings.token,
            method="getMe",
            body={},
            log_context=log_context,
        )
        return call_outcome(answer)

    # --- creating and connecting ---------------------------------------------------------

    def create_serializer(self) -> type[serializers.Serializer]:
        from channels_app.kinds.telegram.serializers import TelegramChannelCreateSerializer

        return TelegramChannelCreateSerializer

    def configure(self, data: dict[str, Any]) -> KindConfig:
        return telegram_config(
            bot_token=data["bot_token"], api_base_url=data.get("api_base_url") or "", secret=secret_token_generate()
        )

    def admin_form(self) -> type[KindChannelForm]:
        from channels_app.kinds.telegram.forms import TelegramChannelForm

        return TelegramChannelForm

    def after_save(self, channel: Channel) -> str:
        return webhook_register(channel)

    def urls(self) -> list[URLPattern | URLResolver]:
        return [path("<str:channel_id>/updates", TelegramUpdatesView.as_view(), name=UPDATES_ROUTE)]

    def connect_panel(self, channel: Channel, *, base_url: str) -> str:
        webhook = (channel.kind_options or {}).get("webhook") or {}
        if webhook.get("ok"):
            status = format_html(
                "Registered with Telegram at {} for <code>{}</code>.", webhook.get("at", ""), webhook.get("url", "")
            )
        elif webhook:
            status = format_html(
                "<strong>Not registered</strong> ({}): {}", webhook.get("at", ""), webhook.get("problem", "")
            )
        else:
            status = mark_safe("<strong>Not registered yet.</strong>")  # noqa: S308 - a constant
        return format_html(
            "<h2>Telegram</h2>"
            "<p>Bot API: <code>{}</code>. The bot token is stored encrypted and never shown; to change it, "
            "enter a new one above and save.</p>"
            "<p>Webhook: {}</p>"
            "<p>Saving this channel registers the webhook again (setWebhook). Customers write to the bot in "
            "Telegram; replies and operators' messages go back to the same chat. "
            "<em>Send test message</em> checks the token (getMe).</p>",
            channel.settings.url if channel.settings else "",
            status,
        )


def webhook_register(channel: Channel) -> str:
    """setWebhook for the channel, its result kept in the channel's options for the connect panel.
    Returns "" or the problem; never raises for Telegram's failures."""
    url = webhook_url(channel)
    if not url:
        problem = WEBHOOK_BASE_MISSING
    else:
        answer = bot_call(
            api_base=channel.settings.url,
            token=channel.settings.token,
            method="setWebhook",
            body={
                "url": url,
                "secret_token": channel.kind_secret,
                "allowed_updates": ALLOWED_UPDATES,
                "drop_pending_updates": False,
            },
            log_context={"channel": str(channel.pk)},
        )
        problem = "" if answer_ok(answer) else f"Telegram's setWebhook failed: {answer_problem(answer)}"
    status = {"ok": not problem, "url": url, "problem": problem, "at": datetime.now(UTC).isoformat(timespec="seconds")}
    options = {**(channel.kind_options or {}), "webhook": status}
    try:
        # The channel's own document, written by its kind only: the form saved it just before.
        Channel.objects.filter(pk=channel.pk).update(kind_options=options)
        channel.kind_options = options
    except (DatabaseError, PyMongoError):
        logger.warning("telegram webhook status not recorded", extra={"channel": str(channel.pk)})
    return problem
