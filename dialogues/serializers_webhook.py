"""The webhook's request and response shapes. Strict: a field that should be a string must be
a JSON string (DRF's CharField would turn 123 into "123" and reject {"$gt": ""} only by
accident), so mistyped input is a 400 and operator objects never reach a query."""

from __future__ import annotations

from rest_framework import serializers

from core.serializers import StrictCharField
from dialogues.models import ID_MAX_LENGTH

TEXT_MAX_LENGTH = 32 * 1024
BODY_MAX_BYTES = 1024 * 1024


class WebhookMessageSerializer(serializers.Serializer):
    message_id = StrictCharField(
        required=False,
        allow_null=True,
        max_length=ID_MAX_LENGTH,
        trim_whitespace=False,
        help_text="The channel's id for this message; duplicates are recognised by it. "
        "Missing or null: a UUID4 is generated.",
    )
    chat_id = StrictCharField(
        max_length=ID_MAX_LENGTH,
        trim_whitespace=False,
        help_text="The id of one of this bot's channels; with `channel_id`, a conversation inside that channel.",
    )
    text = StrictCharField(max_length=TEXT_MAX_LENGTH, trim_whitespace=False)
    message_sender = serializers.ChoiceField(
        choices=["customer", "employee"],
        help_text="`customer` messages are answered; `employee` messages are stored as context only.",
    )
    channel_id = StrictCharField(
        required=False,
        max_length=ID_MAX_LENGTH,
        trim_whitespace=False,
        help_text="Optional: the channel, when one channel carries many conversations (`chat_id`s).",
    )


class WebhookResultSerializer(serializers.Serializer):
    status = serializers.CharField(default="Message processed successfully")
    message_id = serializers.CharField()
    dialogue_id = serializers.CharField()
    duplicate = serializers.BooleanField(help_text="The message was already stored; nothing was stored again.")
    ignored = serializers.BooleanField(
        help_text="Stored, and no reply will be made: an employee's message, a dialogue an operator has taken "
        "over (paused), or a message the LLM gave up on. `ignored_reason` says which."
    )
    answered = serializers.BooleanField(
        required=False,
        help_text="Present, and false, when `ignored` is true: the message is stored and used as context, and "
        "gets no reply, for `ignored_reason`. (`ignored` is kept for existing clients.)",
    )
    ignored_reason = serializers.ChoiceField(
        choices=["employee", "paused", "llm_failed"],
        required=False,
        help_text="Present when `ignored` is true.",
    )
    replied = serializers.BooleanField(help_text="A reply exists for this message.")
    reply_pending = serializers.BooleanField(
        help_text="A reply is owed and not generated yet; the worker generates and delivers it."
    )
    reply_message_id = serializers.CharField(allow_null=True)
    delivery = serializers.ChoiceField(
        choices=["delivered", "queued", "dead", "in_progress"],
        allow_null=True,
        help_text="What is known of the reply's delivery so far: `queued` (owed to the channel; the worker "
        "retries it), `delivered`, `dead`, or null while there is no reply yet.",
    )
    resumed = serializers.BooleanField(help_text="Always false: the worker, not a duplicate, resumes unfinished work.")


class WebhookErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
