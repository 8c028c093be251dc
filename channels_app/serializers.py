from __future__ import annotations

from typing import Any

from rest_framework import serializers

from channels_app.models import URL_MAX_LENGTH, Channel
from channels_app.services import channel_url_check
from chatbots.models import ChatBot
from core.errors import ApplicationError
from core.serializers import ObjectIdField
from core.validators import validate_no_control_characters

NAME_MAX_LENGTH = Channel._meta.get_field("name").max_length


class ChannelSerializer(serializers.Serializer):
    """The existing contract, flat: the stored `settings: {url, token}` appear as `url` and
    `token`. Built by hand rather than from the model because of that flattening."""

    id = ObjectIdField(read_only=True)
    name = serializers.CharField(read_only=True)
    chat_bot_id = ObjectIdField(read_only=True)
    url = serializers.CharField(source="settings.url", read_only=True)
    is_active = serializers.BooleanField(read_only=True)
    token = serializers.CharField(
        source="settings.token",
        read_only=True,
        help_text="Sent to the channel's URL with every reply, so it can check that replies come from us.",
    )


def _check_url(url: str) -> str:
    """The services' rule for channel URLs, its error as this field's."""
    try:
        return channel_url_check(url)
    except ApplicationError as exc:
        raise serializers.ValidationError(exc.message) from None


class ChannelCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=NAME_MAX_LENGTH, validators=[validate_no_control_characters])
    chat_bot_id = ObjectIdField()
    url = serializers.CharField(
        max_length=URL_MAX_LENGTH, help_text=f"Absolute http(s) URL, at most {URL_MAX_LENGTH} characters."
    )
    is_active = serializers.BooleanField(required=False, default=True)

    def validate_url(self, value: str) -> str:
        return _check_url(value)

    def validate_chat_bot_id(self, value: Any) -> Any:
        chat_bot = ChatBot.objects.filter(pk=value).first()
        if chat_bot is None:
            raise serializers.ValidationError("Unknown chat bot.")
        return chat_bot


class ChannelUpdateSerializer(serializers.Serializer):
    """PUT needs name and url; PATCH any subset. The bot is fixed at creation: a body that
    echoes the current chat_bot_id (clients often send back what they read) is accepted."""

    name = serializers.CharField(max_length=NAME_MAX_LENGTH, validators=[validate_no_control_characters])
    url = serializers.CharField(max_length=URL_MAX_LENGTH)
    is_active = serializers.BooleanField(required=False)
    chat_bot_id = ObjectIdField(required=False, help_text="Cannot change; accepted only if equal to the current.")

    def validate_url(self, value: str) -> str:
        return _check_url(value)

    def validate_chat_bot_id(self, value: Any) -> Any:
        channel: Channel = self.context["channel"]
        if value != channel.chat_bot_id:
            raise serializers.ValidationError("A channel cannot move to another bot.")
        return value


class ChannelFilterSerializer(serializers.Serializer):
    chat_bot_id = ObjectIdField(required=False, help_text="Only this bot's channels.")
    active = serializers.BooleanField(required=False, help_text="`true` or `false`: only (in)active channels.")
