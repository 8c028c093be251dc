from __future__ import annotations

from typing import Any

from rest_framework import exceptions, serializers

from core.serializers import BaseModelSerializer, ObjectIdField, StrictCharField
from dialogues.models import ID_MAX_LENGTH, Dialogue, Message
from dialogues.selectors import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, message_by_message_id


class AttachmentSerializer(serializers.Serializer):
    """A file sent with a message, by link, as the channel gave it."""

    url = serializers.CharField(read_only=True, help_text="Where the file is (https).")
    mime_type = serializers.CharField(read_only=True, allow_null=True, help_text="Its media type; null if not given.")
    name = serializers.CharField(read_only=True, allow_null=True, help_text="Its name; null if not given.")
    size = serializers.IntegerField(read_only=True, allow_null=True, help_text="Bytes; null if not given.")


class MessageSerializer(BaseModelSerializer):
    """One message of a dialogue: from the customer, a bot reply, or from an employee."""

    attachments = AttachmentSerializer(
        many=True,
        read_only=True,
        help_text="Files sent with the message (the webhook's `attachments`), by link; empty when none. The "
        "`text` of a message of files only is empty.",
    )

    class Meta:
        model = Message
        fields = ["message_id", "role", "text", "attachments", "created_at", "in_reply_to", "delivery_state"]
        read_only_fields = fields
        extra_kwargs = {
            "role": {
                "help_text": "Who wrote it. `USER`: the customer. `ASSISTANT`: a bot reply. `EMPLOYEE`: an "
                "employee, on the channel's side (`message_sender: employee`) or an operator here, in the admin "
                "or the API. `SYSTEM`: in the existing schema; not written by this server."
            },
            "in_reply_to": {"help_text": "For a bot reply: the `message_id` of the customer's message it answers."},
            "delivery_state": {
                "help_text": "For what is delivered to the channel (bot replies, and employees' messages written "
                "here): how its delivery stands. Null for the rest."
            },
        }

    def to_representation(self, instance: Message) -> dict[str, Any]:
        data = super().to_representation(instance)
        # Messages stored before attachments existed hold none (null in the database).
        if data.get("attachments") is None:
            data["attachments"] = []
        return data


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
    chat_id = StrictCharField(required=False, max_length=ID_MAX_LENGTH, help_text="Only this chat_id.")


class HistoryQuerySerializer(serializers.Serializer):
    """Cursor paging of a dialogue's messages. The dialogue (or None) comes in the context;
    cursors resolve to the messages they name."""

    before = StrictCharField(
        required=False,
        max_length=ID_MAX_LENGTH,
        help_text="A message_id: the page of messages just older than it. A message_id that is not in the "
        "dialogue is a 404 naming this parameter.",
    )
    after = StrictCharField(
        required=False,
        max_length=ID_MAX_LENGTH,
        help_text="A message_id: the page of messages just newer than it. Not together with `before`.",
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
        # A well-formed cursor that names no message of the dialogue: what it refers to is not
        # found (404, naming the parameter), as for an unknown id in a path.
        dialogue = self.context.get("dialogue")
        for name in ("before", "after"):
            if name not in attrs:
                continue
            message = message_by_message_id(dialogue=dialogue, message_id=attrs[name]) if dialogue else None
            if message is None:
                raise exceptions.NotFound({name: ["No message with this message_id in the dialogue."]})
            attrs[name] = message
        if "before" in attrs and "after" in attrs:
            raise serializers.ValidationError({"after": ["Give either before or after, not both."]})
        return attrs


# --- Hand-off and operators' messages ------------------------------------------------------


class DialogueHandoffSerializer(DialogueSerializer):
    """A dialogue with the bot's hand-off state."""

    paused = serializers.BooleanField(
        source="is_paused", read_only=True, help_text="The bot does not answer this dialogue's customers now."
    )
    paused_until = serializers.DateTimeField(
        source="pause_ends_at",
        read_only=True,
        allow_null=True,
        help_text="When the pause ends by itself. null while the bot is active, and while it is paused "
        "until resumed (`paused: true`).",
    )

    class Meta(DialogueSerializer.Meta):
        fields = [*DialogueSerializer.Meta.fields, "paused", "paused_until"]
        read_only_fields = fields


class DialogueHandoffFilterSerializer(DialogueFilterSerializer):
    paused = serializers.BooleanField(
        required=False, help_text="`true`: only dialogues whose bot is paused now; `false`: only active ones."
    )


class _StrictIntegerField(serializers.IntegerField):
    """A JSON integer only: not a string, a float or a boolean."""

    default_error_messages = {"strict": "Must be an integer."}

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("strict")
        return int(super().to_internal_value(data))


class _StrictCharField(serializers.CharField):
    default_error_messages = {"strict": "Must be a string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("strict")
        return str(super().to_internal_value(data))


class DialoguePauseSerializer(serializers.Serializer):
    minutes = _StrictIntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=525_600,
        help_text="How long the bot stays paused (1 to 525600). Absent or null: until resumed.",
    )


class OperatorMessageRequestSerializer(serializers.Serializer):
    text = _StrictCharField(
        max_length=32 * 1024,
        trim_whitespace=False,
        help_text="Sent to the customer as a message from an employee (role `EMPLOYEE`), written by you.",
    )

    def validate_text(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("This field may not be blank.")
        return value


class OperatorMessageSerializer(MessageSerializer):
    """A stored message, and for an employee's message written here, the staff user who wrote it."""

    author_username = serializers.CharField(
        read_only=True,
        allow_null=True,
        help_text="The staff user who wrote it in the admin or the API. Null for the customer's messages, bot "
        "replies and employees' messages from the channel.",
    )

    class Meta(MessageSerializer.Meta):
        fields = [*MessageSerializer.Meta.fields, "author_username"]
        read_only_fields = fields
