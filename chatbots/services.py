from __future__ import annotations

from django.db import transaction

from chatbots.models import ChatBot
from core.tokens import display_prefix, generate_bot_secret, hash_secret, secrets_match


def chatbot_create(*, name: str) -> tuple[ChatBot, str]:
    """Creates a bot. Returns it with its secret in plaintext: the only time it exists."""
    secret = generate_bot_secret()
    chat_bot = ChatBot.objects.create(name=name, secret_hash=hash_secret(secret), secret_prefix=display_prefix(secret))
    return chat_bot, secret


def chatbot_update(*, chat_bot: ChatBot, name: str) -> ChatBot:
    chat_bot.name = name
    chat_bot.save(update_fields=["name", "updated_at"])
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
