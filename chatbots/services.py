from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chatbots.models import ChatBot
from core.errors import Conflict
from core.tokens import display_prefix, generate_bot_secret, hash_secret, secrets_match

# The bot's LLM settings (blank or null: the platform's default).
LLM_SETTINGS = frozenset(
    {"system_prompt", "llm_model", "temperature", "max_output_tokens", "context_messages", "fallback_text"}
)
# When the bot steps aside for a human (minutes; 0: never).
HANDOFF_SETTINGS = frozenset({"pause_after_employee_minutes", "pause_after_operator_reply_minutes"})
BOT_SETTINGS = LLM_SETTINGS | HANDOFF_SETTINGS


def _check_llm_settings(llm_settings: dict[str, Any]) -> None:
    unknown = set(llm_settings) - BOT_SETTINGS
    if unknown:
        raise TypeError(f"not settings of a bot: {sorted(unknown)}")


def chatbot_create(*, name: str, **llm_settings: Any) -> tuple[ChatBot, str]:
    """Creates a bot. Returns it with its secret in plaintext: the only time it exists."""
    _check_llm_settings(llm_settings)
    secret = generate_bot_secret()
    chat_bot = ChatBot.objects.create(
        name=name, secret_hash=hash_secret(secret), secret_prefix=display_prefix(secret), **llm_settings
    )
    return chat_bot, secret


def chatbot_update(*, chat_bot: ChatBot, name: str | None = None, **llm_settings: Any) -> ChatBot:
    """Writes the name and the LLM settings given; what is left out keeps its value."""
    _check_llm_settings(llm_settings)
    fields = {**({"name": name} if name is not None else {}), **llm_settings}
    if not fields:
        return chat_bot
    for field, value in fields.items():
        setattr(chat_bot, field, value)
    chat_bot.save(update_fields=[*fields, "updated_at"])
    return chat_bot


def chatbot_rotate_secret(*, chat_bot: ChatBot, overlap_s: float | None = None) -> str:
    """Replaces the secret. Returns the new plaintext.

    With an overlap (seconds; default BOT_SECRET_OVERLAP_S), the secret being replaced keeps
    working that long, so channels can switch without losing traffic; without, it stops at
    once. Only one previous secret is kept: rotating again during an overlap retires the older
    one at once. The write is conditional on the secret this rotation replaces, so of two
    rotations at the same moment one wins and the other raises `Conflict` (its new secret
    would otherwise be lost, or silently retire the winner's)."""
    if overlap_s is None:
        overlap_s = settings.BOT_SECRET_OVERLAP_S
    secret = generate_bot_secret()
    now = timezone.now()
    replaced = chat_bot.secret_hash
    fields: dict[str, Any] = {
        "secret_hash": hash_secret(secret),
        "secret_prefix": display_prefix(secret),
        "previous_secret_hash": replaced if overlap_s > 0 else None,
        "previous_secret_until": now + timedelta(seconds=overlap_s) if overlap_s > 0 else None,
        "updated_at": now,
    }
    if not ChatBot.objects.filter(pk=chat_bot.pk, secret_hash=replaced).update(**fields):
        raise Conflict("The secret was rotated by another request at the same time; fetch the bot and try again")
    for field, value in fields.items():
        setattr(chat_bot, field, value)
    return secret


def chatbot_delete(*, chat_bot: ChatBot) -> None:
    """Deletes the bot with its channels, dialogues and messages (they cannot outlive it:
    nothing could authenticate to them any more)."""
    with transaction.atomic():  # a no-op on MongoDB; the cascade is idempotent if repeated
        chat_bot.delete()


def chatbot_authenticate(*, secret: str) -> ChatBot | None:
    """The bot whose secret this is, or None. Looked up by hash (unique index), then compared
    in constant time. A miss is looked up once more among previous secrets still in their
    overlap (a second unique index), so a wrong secret costs two indexed look-ups at most."""
    if not secret:
        return None
    digest = hash_secret(secret)
    chat_bot = ChatBot.objects.filter(secret_hash=digest).first()
    if chat_bot is not None and secrets_match(digest, chat_bot.secret_hash):
        return chat_bot
    chat_bot = ChatBot.objects.filter(previous_secret_hash=digest).first()
    if (
        chat_bot is not None
        and chat_bot.previous_secret_hash is not None
        and chat_bot.previous_secret_until is not None
        and chat_bot.previous_secret_until > timezone.now()
        and secrets_match(digest, chat_bot.previous_secret_hash)
    ):
        return chat_bot
    return None
