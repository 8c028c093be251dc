from __future__ import annotations

from rest_framework import serializers

from chatbots.models import ChatBot
from core.serializers import BaseModelSerializer
from core.validators import validate_no_control_characters


class ChatBotSerializer(BaseModelSerializer):
    """What reads show: the secret's prefix only, never the secret."""

    class Meta:
        model = ChatBot
        fields = ["id", "name", "secret_prefix", "created_at", "updated_at"]
        read_only_fields = ["id", "secret_prefix", "created_at", "updated_at"]


class ChatBotWithSecretSerializer(ChatBotSerializer):
    """Create and rotate only: the plaintext secret, shown this once."""

    secret_token = serializers.CharField(
        read_only=True, help_text="The bot's secret. Shown only in this response; store it now."
    )

    class Meta(ChatBotSerializer.Meta):
        fields = [*ChatBotSerializer.Meta.fields, "secret_token"]


class ChatBotInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, allow_blank=False, validators=[validate_no_control_characters])
