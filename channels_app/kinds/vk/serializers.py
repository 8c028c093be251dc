"""`POST /api/channels/kinds/vk/`: what a VK channel is created from, and its answer."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from rest_framework import serializers

from channels_app.kinds.base import KindConfig
from channels_app.serializers import (
    URL_PATTERN,
    URL_PATTERN_MESSAGE,
    KindChannelCreatedSerializer,
    KindChannelCreateSerializer,
)
from channels_app.services import channel_url_check
from core.errors import ApplicationError
from core.serializers import StrictCharField, StrictIntegerField

DEFAULT_API_VERSION = "5.199"
# VK's own bounds are smaller (a confirmation code is 8 characters, a secret key at most 50);
# these only keep a stored value small and printable.
CODE_MAX_LENGTH = 64
SECRET_MAX_LENGTH = 50
TOKEN_MAX_LENGTH = 512
GROUP_ID_MAX = 2**63 - 1
# A value pasted into VK's settings or from them: printable ASCII without spaces (VK's keys,
# codes and secrets are). A character class rather than `\S`, whose meaning differs between
# Python's and JavaScript's regular expressions (the schema states this pattern to clients).
NO_SPACE_PATTERN = r"^[!-~]+$"
NO_SPACE_MESSAGE = "Printable ASCII characters only, without spaces."
API_VERSION_PATTERN = r"^[0-9]+\.[0-9]+$"


def secret_generate() -> str:
    # Letters and digits only: what VK's "Secret key" box takes.
    return secrets.token_hex(16)


def api_base_url_check(url: str) -> str:
    try:
        return channel_url_check(url).rstrip("/")
    except ApplicationError as exc:
        raise serializers.ValidationError(exc.message) from None


def vk_config(
    *, group_id: int, access_token: str, confirmation_code: str, secret: str, api_version: str, api_base_url: str
) -> KindConfig:
    """A VK channel's settings: the community key as the channel's service token, the Callback
    API's secret key as the kind's secret; the rest is not secret."""
    return KindConfig(
        url=api_base_url or settings.VK_API_BASE_URL,
        token=access_token,
        secret=secret,
        options={
            "group_id": group_id,
            "confirmation_code": confirmation_code,
            "api_version": api_version or DEFAULT_API_VERSION,
        },
    )


class VkChannelCreateSerializer(KindChannelCreateSerializer):
    group_id = StrictIntegerField(min_value=1, max_value=GROUP_ID_MAX, help_text="The community's id (a number).")
    access_token = StrictCharField(
        write_only=True,
        max_length=TOKEN_MAX_LENGTH,
        pattern=NO_SPACE_PATTERN,
        pattern_message=NO_SPACE_MESSAGE,
        help_text="The community's access key (Manage → API usage → Access tokens) with the "
        "`messages` permission. Stored encrypted; never shown again.",
    )
    confirmation_code = StrictCharField(
        max_length=CODE_MAX_LENGTH,
        pattern=NO_SPACE_PATTERN,
        pattern_message=NO_SPACE_MESSAGE,
        help_text="The string VK's Callback API settings say the server must return.",
    )
    secret = StrictCharField(
        write_only=True,
        required=False,
        allow_blank=True,
        default="",
        max_length=SECRET_MAX_LENGTH,
        pattern=NO_SPACE_PATTERN,
        pattern_message=NO_SPACE_MESSAGE,
        help_text="The Callback API's secret key. Blank: one is generated and shown once in the "
        "answer (`secret`), to paste into VK.",
    )
    api_version = StrictCharField(
        required=False,
        default=DEFAULT_API_VERSION,
        pattern=API_VERSION_PATTERN,
        pattern_message="A VK API version, such as 5.199.",
        max_length=16,
        help_text="The VK API version of our calls (and of the Callback API server's events).",
    )
    api_base_url = StrictCharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=2048,
        pattern=f"^$|{URL_PATTERN}",
        pattern_message=URL_PATTERN_MESSAGE,
        help_text="Where VK API calls go; blank: the VK_API_BASE_URL setting (https://api.vk.com/method).",
    )

    def validate_api_base_url(self, value: str) -> str:
        return api_base_url_check(value) if value else ""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        generated = not attrs.get("secret")
        if generated:
            attrs["secret"] = secret_generate()
        return {**attrs, "secret_generated": generated}


class VkChannelCreatedSerializer(KindChannelCreatedSerializer):
    """The create's answer (the schema's; the view adds these to ChannelCreatedSerializer's)."""

    callback_url = serializers.CharField(
        read_only=True, help_text="The address to give VK (Callback API → Server settings → URL)."
    )
    # Not `read_only`, so that the schema does not require it (absent when the request gave one).
    secret = serializers.CharField(
        required=False,
        help_text="Only when the request left `secret` blank: the generated secret key, to paste "
        "into VK. Shown only here.",
    )
