"""A Telegram channel's settings: the bot token's shape, the Bot API's base, our secret token."""

from __future__ import annotations

import re
import secrets

from django.conf import settings

from channels_app.kinds.base import KindConfig
from channels_app.services import validate_channel_url
from core.errors import ApplicationError

# What @BotFather gives: the bot's numeric id, a colon, then the secret part (35 characters
# today; longer accepted, should Telegram lengthen it).
BOT_TOKEN_PATTERN = re.compile(r"^[0-9]{1,20}:[A-Za-z0-9_-]{35,100}$")
BOT_TOKEN_INVALID = (
    "Not a Telegram bot token: @BotFather's token looks like 123456789:AAH… (digits, a colon, 35+ characters)"  # noqa: S105
)
API_BASE_MAX_LENGTH = 512


def bot_token_check(token: str) -> str:
    token = token.strip()
    if not BOT_TOKEN_PATTERN.match(token):
        raise ApplicationError(BOT_TOKEN_INVALID)
    return token


def api_base_check(url: str) -> str:
    url = url.strip().rstrip("/")
    validate_channel_url(url)
    return url


def api_base_default() -> str:
    return str(settings.TELEGRAM_API_BASE_URL).rstrip("/")


def secret_token_generate() -> str:
    """setWebhook's `secret_token`: 1-256 characters of A-Z a-z 0-9 _ - (token_urlsafe's
    alphabet), 256 bits of randomness."""
    return secrets.token_urlsafe(32)


def telegram_config(*, bot_token: str, api_base_url: str, secret: str) -> KindConfig:
    return KindConfig(url=api_base_url or api_base_default(), token=bot_token, secret=secret, options={})
