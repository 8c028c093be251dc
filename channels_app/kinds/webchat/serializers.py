"""The body of `POST /api/channels/kinds/webchat/`."""

from __future__ import annotations

from rest_framework import serializers

from channels_app.kinds.webchat.options import (
    ORIGIN_MAX_LENGTH,
    ORIGINS_MAX,
    TITLE_MAX_LENGTH,
    origins_clean,
)
from channels_app.serializers import KindChannelCreateSerializer
from core.serializers import NO_CONTROL_CHARACTERS_PATTERN, StrictCharField


class WebchatChannelCreateSerializer(KindChannelCreateSerializer):
    allowed_origins = serializers.ListField(
        child=StrictCharField(max_length=ORIGIN_MAX_LENGTH),
        min_length=1,
        max_length=ORIGINS_MAX,
        help_text="The sites the widget may be embedded on, each exactly `scheme://host[:port]` "
        "(e.g. `https://shop.example.com`); the first is the channel's site.",
    )
    title = StrictCharField(
        max_length=TITLE_MAX_LENGTH,
        required=False,
        allow_blank=True,
        default="",
        pattern=NO_CONTROL_CHARACTERS_PATTERN,
        help_text="The chat window's title; blank: a default in the page's language.",
    )

    def validate_allowed_origins(self, value: list[str]) -> list[str]:
        try:
            return origins_clean(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None
