from __future__ import annotations

from rest_framework import serializers

from channels_app.kinds.telegram.config import (
    API_BASE_MAX_LENGTH,
    BOT_TOKEN_INVALID,
    BOT_TOKEN_PATTERN,
    api_base_check,
    bot_token_check,
)
from channels_app.serializers import URL_PATTERN, URL_PATTERN_MESSAGE, KindChannelCreateSerializer
from core.errors import ApplicationError
from core.serializers import StrictCharField


class TelegramChannelCreateSerializer(KindChannelCreateSerializer):
    bot_token = StrictCharField(
        write_only=True,
        max_length=128,
        pattern=BOT_TOKEN_PATTERN.pattern,
        pattern_message=BOT_TOKEN_INVALID,
        help_text="The bot's token from @BotFather (`123456789:AAH…`). Stored encrypted; never shown again.",
    )
    api_base_url = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=API_BASE_MAX_LENGTH,
        pattern=f"^$|{URL_PATTERN}",
        pattern_message=URL_PATTERN_MESSAGE,
        help_text="The Bot API's base URL; default TELEGRAM_API_BASE_URL (https://api.telegram.org). "
        "A local Bot API server's URL here.",
    )

    def validate_bot_token(self, value: str) -> str:
        try:
            return bot_token_check(value)
        except ApplicationError as exc:
            raise serializers.ValidationError(exc.message) from None

    def validate_api_base_url(self, value: str) -> str:
        if not value.strip():
            return ""
        try:
            return api_base_check(value)
        except ApplicationError as exc:
            raise serializers.ValidationError(exc.message) from None
