from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from channels_app.models import URL_MAX_LENGTH
from channels_app.serializers import URL_PATTERN, URL_PATTERN_MESSAGE
from channels_app.services import validate_channel_url
from core.errors import ApplicationError
from core.serializers import (
    BaseModelSerializer,
    StrictCharField,
    StrictIntegerField,
    strict_name_field,
)
from llm.models import API_KEY_MAX_LENGTH, LLMProvider
from llm.pacing import pacing_usage, provider_key

LIMITS = ["max_concurrent", "requests_per_minute", "tokens_per_minute"]


class LLMProviderSerializer(BaseModelSerializer):
    """What reads show: whether the provider has an API key, never the key."""

    # As stored (a string, not the URLField's `uri`: the rule is the input's pattern).
    base_url = serializers.CharField(read_only=True)
    has_api_key = serializers.SerializerMethodField(help_text="Whether an API key is set (it is never shown).")

    class Meta:
        model = LLMProvider
        fields = ["id", "name", "base_url", "has_api_key", *LIMITS, "created_at", "updated_at"]
        read_only_fields = fields

    def get_has_api_key(self, obj: LLMProvider) -> bool:
        return bool(obj.api_key)


USAGE_FIELDS = ["calls_in_flight", "requests_last_minute", "tokens_last_minute", "blocked_until"]


class LLMProviderUsageSerializer(serializers.Serializer):
    calls_in_flight = serializers.IntegerField(help_text="Calls in flight now, in every worker process.")
    requests_last_minute = serializers.IntegerField(help_text="Calls started in the last minute (60-70 s).")
    tokens_last_minute = serializers.IntegerField(help_text="Tokens used in the last minute (60-70 s).")
    blocked_until = serializers.DateTimeField(
        allow_null=True, help_text="Until when the server asked for no calls (a 429, rate-limit headers); null: not."
    )


class LLMProviderDetailSerializer(LLMProviderSerializer):
    """One provider, with its current use against its limits (read from the pacing's shared
    state: one small read, so only on the detail)."""

    usage = serializers.SerializerMethodField(help_text="Current use, against the limits above.")

    class Meta(LLMProviderSerializer.Meta):
        fields = [*LLMProviderSerializer.Meta.fields, "usage"]
        read_only_fields = fields

    @extend_schema_field(LLMProviderUsageSerializer)
    def get_usage(self, obj: LLMProvider) -> dict[str, Any]:
        usage = pacing_usage(provider_key(obj))
        return {name: usage[name] for name in USAGE_FIELDS}


def _limit(name: str) -> StrictIntegerField:
    return StrictIntegerField(
        required=False, allow_null=True, min_value=1, max_value=10_000_000, help_text=f"{name}. Null: no limit."
    )


class LLMProviderInputSerializer(serializers.Serializer):
    """Create and update. `api_key` is write-only: left out of an update (even a PUT), the key
    is kept; an empty string removes it."""

    name = strict_name_field(max_length=200, help_text="Unique; no control characters; not blank.")
    base_url = StrictCharField(
        max_length=URL_MAX_LENGTH,
        pattern=URL_PATTERN,
        pattern_message=URL_PATTERN_MESSAGE,
        help_text="The server's OpenAI-compatible API root, e.g. `https://api.openai.com/v1`: an absolute "
        f"http(s) URL of at most {URL_MAX_LENGTH} characters. Private addresses are allowed (a self-hosted "
        "vLLM or Ollama).",
    )
    api_key = StrictCharField(
        required=False,
        allow_blank=True,
        write_only=True,
        max_length=API_KEY_MAX_LENGTH,
        help_text="Sent as `Authorization: Bearer <key>`. Write-only: never shown; left out, it is kept.",
    )
    max_concurrent = _limit("At most this many calls at once")
    requests_per_minute = _limit("At most this many requests a minute")
    tokens_per_minute = _limit("At most this many tokens a minute")

    def validate_base_url(self, value: str) -> str:
        try:
            return validate_channel_url(value.strip())
        except ApplicationError as exc:
            raise serializers.ValidationError(exc.message.replace("url", "base_url", 1)) from None
