from __future__ import annotations

from typing import Any

from rest_framework import serializers

from core.serializers import BaseModelSerializer, ObjectIdField
from dialogues.models import ID_MAX_LENGTH, Dialogue, Message
from dialogues.selectors import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, message_by_message_id


class MessageSerializer(BaseModelSerializer):
    class Meta:
        model = Message
        fields = ["message_id", "role", "text", "created_at", "in_reply_to", "delivery_state"]
        read_only_fields = fields


class DialogueSerializer(BaseModelSerializer):
    chat_bot_id = ObjectIdField(read_only=True)
    channel_id = ObjectIdField(read_only=True)

    class Meta:
        model = Dialogue
        fields = ["id", "chat_bot_id", "channel_id", "chat_id", "created_at", "last_message_at", "message_count"]
        read_only_fields = fields


class DialogueHistorySerializer(serializers.Serializer):
    """One page of a dialogue's messages, oldest first. To go further back, pass the first
    message's `message_id` as `before`; to go forward, the last one's as `after`."""

    id = ObjectIdField(allow_null=True, read_only=True, help_text="null while the dialogue has no messages yet.")
    chat_bot_id = ObjectIdField(read_only=True)
    channel_id = ObjectIdField(read_only=True)
    chat_id = serializers.CharField(read_only=True)
    message_list = MessageSerializer(many=True, read_only=True)
    has_more = serializers.BooleanField(
        read_only=True,
        help_text="More messages lie beyond this page in the direction of travel: older ones for the "
        "latest page and for `before`, newer ones for `after`.",
    )


class DialogueFilterSerializer(serializers.Serializer):
    chat_bot_id = ObjectIdField(required=False, help_text="Only this bot's dialogues.")
    channel_id = ObjectIdField(required=False, help_text="Only this channel's dialogues.")
    chat_id = serializers.CharField(required=False, max_length=ID_MAX_LENGTH, help_text="Only this chat_id.")


class HistoryQuerySerializer(serializers.Serializer):
    """Cursor paging of a dialogue's messages. The dialogue (or None) comes in the context;
    cursors resolve to the messages they name."""

    before = serializers.CharField(
        required=False, max_length=ID_MAX_LENGTH, help_text="A message_id: the page of messages just older than it."
    )
    after = serializers.CharField(
        required=False, max_length=ID_MAX_LENGTH, help_text="A message_id: the page of messages just newer than it."
    )
    limit = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_PAGE_SIZE,
        default=DEFAULT_PAGE_SIZE,
        help_text=f"Messages per page (default {DEFAULT_PAGE_SIZE}, at most {MAX_PAGE_SIZE}). "
        "Without a cursor the page is the latest messages.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "before" in attrs and "after" in attrs:
            raise serializers.ValidationError({"after": ["Give either before or after, not both."]})
        dialogue = self.context.get("dialogue")
        for name in ("before", "after"):
            if name not in attrs:
                continue
            message = message_by_message_id(dialogue=dialogue, message_id=attrs[name]) if dialogue else None
            if message is None:
                raise serializers.ValidationError({name: ["No message with this message_id in the dialogue."]})
            attrs[name] = message
        return attrs
