"""The body of `POST /api/channels/kinds/webchat/`."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from channels_app.kinds.webchat.options import (
    ORIGIN_MAX_LENGTH,
    ORIGINS_MAX,
    TITLE_MAX_LENGTH,
    origins_clean,
)
from channels_app.serializers import KindChannelCreateSerializer
from core.serializers import NO_CONTROL_CHARACTERS_PATTERN, StrictCharField

# What `origin_normalize` accepts, as the schema states it: http(s)://host[:port], a trailing
# slash at most (an IPv6 address is not accepted as an origin here).
_PORT = "(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
ORIGIN_PATTERN = f"^[hH][tT][tT][pP][sS]?://[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::{_PORT})?/?$"


class FlatListField(serializers.ListField):
    """A list whose items' errors are one flat list of messages naming the item (`[2]: ...`),
    in the one error shape of the API (`{field: [messages]}`), not DRF's nested dict."""

    def run_child_validation(self, data: list[Any]) -> list[Any]:
        try:
            return super().run_child_validation(data)
        except serializers.ValidationError as exc:
            detail = exc.detail
            if not isinstance(detail, dict):
                raise
            messages = [
                f"[{index}]: {message}"
                for index, errors in detail.items()
                for message in (errors if isinstance(errors, list) else [errors])
            ]
            raise serializers.ValidationError(messages) from None


class WebchatChannelCreateSerializer(KindChannelCreateSerializer):
    allowed_origins = FlatListField(
        child=StrictCharField(
            max_length=ORIGIN_MAX_LENGTH,
            pattern=ORIGIN_PATTERN,
            pattern_message="An origin is http(s)://host[:port], e.g. https://shop.example.com.",
        ),
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
