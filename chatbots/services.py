from __future__ import annotations

from typing import Any

from django.db import transaction

from chatbots.models import ChatBot
from core.tokens import display_prefix, generate_bot_secret, hash_secret, secrets_match

# The bot's LLM settings (blank or null: the platform's default).
LLM_SETTINGS = frozenset(
    {"system_prompt", "llm_model", "temperature", "max_output_tokens", "context_messages", "fallback_text"}
)


def _check_llm_settings(llm_settings: dict[str, Any]) -> None:
    unknown = set(llm_settings) - LLM_SETTINGS
    if unknown:
        raise TypeError(f"not LLM settings of a bot: {sorted(unknown)}")


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


def chatbot_rotate_secret(*, chat_bot: ChatBot) -> str:
    """Replaces the secret; the old one stops working at once. Returns the new plaintext."""
    secret = generate_bot_secret()
    chat_bot.secret_hash = hash_secret(secret)
    chat_bot.secret_prefix = display_prefix(secret)
    chat_bot.save(update_fields=["secret_hash", "secret_prefix", "updated_at"])
    return secret


def chatbot_delete(*, chat_bot: ChatBot) -> None:
    """Deletes the bot with its channels, dialogues and messages (they cannot outlive it:
    nothing could authenticate to them any more)."""
    with transaction.atomic():  # a no-op on MongoDB; the cascade is idempotent if repeated
        chat_bot.delete()


def chatbot_authenticate(*, secret: str) -> ChatBot | None:
    """The bot whose secret this is, or None. Looked up by hash (unique index), then compared
    in constant time."""
    if not secret:
        return None
    digest = hash_secret(secret)
    chat_bot = ChatBot.objects.filter(secret_hash=digest).first()
    if chat_bot is None or not secrets_match(digest, chat_bot.secret_hash):
        return None
    return chat_bot
