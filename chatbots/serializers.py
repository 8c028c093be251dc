from __future__ import annotations

from rest_framework import serializers

from chatbots.models import ChatBot
from core.serializers import BaseModelSerializer
from core.validators import validate_no_control_characters

# Generous bounds that still keep one bot's settings from filling a request or a document.
SYSTEM_PROMPT_MAX_LENGTH = 20_000
FALLBACK_TEXT_MAX_LENGTH = 4_000
MAX_OUTPUT_TOKENS_LIMIT = 1_000_000


# The bot's LLM settings. Blank or null means the platform's default.
LLM_SETTINGS = ["system_prompt", "llm_model", "temperature", "max_output_tokens", "context_messages", "fallback_text"]


class ChatBotSerializer(BaseModelSerializer):
    """What reads show: the secret's prefix only, never the secret."""

    class Meta:
        model = ChatBot
        fields = ["id", "name", "secret_prefix", *LLM_SETTINGS, "created_at", "updated_at"]
        read_only_fields = ["id", "secret_prefix", "created_at", "updated_at"]


class ChatBotWithSecretSerializer(ChatBotSerializer):
    """Create and rotate only: the plaintext secret, shown this once."""

    secret_token = serializers.CharField(
        read_only=True, help_text="The bot's secret. Shown only in this response; store it now."
    )

    class Meta(ChatBotSerializer.Meta):
        fields = [*ChatBotSerializer.Meta.fields, "secret_token"]


class ChatBotInputSerializer(serializers.Serializer):
    """Create and update. The LLM settings are optional everywhere: left out (even from a PUT)
    they keep their value, so a client that only renames a bot never resets them."""

    name = serializers.CharField(max_length=200, allow_blank=False, validators=[validate_no_control_characters])
    system_prompt = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=SYSTEM_PROMPT_MAX_LENGTH,
        trim_whitespace=False,
        help_text="Sent first, as the system message. Blank: none.",
    )
    llm_model = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=200,
        validators=[validate_no_control_characters],
        help_text="Blank: the platform's LLM_MODEL.",
    )
    temperature = serializers.FloatField(
        required=False, allow_null=True, min_value=0.0, max_value=2.0, help_text="0-2. Null: the server's default."
    )
    max_output_tokens = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=MAX_OUTPUT_TOKENS_LIMIT,
        help_text="At least 1. Null: the server's default.",
    )
    context_messages = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=1000,
        help_text="How many of the dialogue's latest messages the LLM sees, 1-1000. Null: LLM_CONTEXT_MESSAGES.",
    )
    fallback_text = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=FALLBACK_TEXT_MAX_LENGTH,
        help_text="Sent instead of a reply when the LLM keeps failing. Blank: no reply (marked failed).",
    )
