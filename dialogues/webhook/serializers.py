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
        help_text="Who wrote it. `customer`: a message from the customer (stored with role `USER`), which gets "
        "a bot reply. `employee`: a message from an employee on the channel's side (role `EMPLOYEE`), stored "
        'and used as context, never answered: the answer says `"answered": false, "ignored_reason": "employee"`.',
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
        help_text="Kept for compatibility with existing clients; `answered` and `ignored_reason` say it in plain "
        "words. True whenever the message gets no bot reply: it is stored all the same (never dropped) and "
        "stays in the dialogue as context."
    )
    answered = serializers.BooleanField(
        required=False,
        help_text="Present, and false, when the message is stored and gets no bot reply, for `ignored_reason`: "
        "a message from an employee, a customer's message while an employee has the dialogue (the bot is "
        "paused), or one the LLM gave up on. Absent otherwise.",
    )
    ignored_reason = serializers.ChoiceField(
        choices=["employee", "paused", "llm_failed"],
        required=False,
        help_text="Why there is no bot reply; present with `answered: false`. `employee`: a message from an "
        "employee. `paused`: a customer's message while the bot is paused in the dialogue. `llm_failed`: the "
        "LLM kept failing and the bot has no `fallback_text`.",
    )
    replied = serializers.BooleanField(help_text="A bot reply exists for this message.")
    reply_pending = serializers.BooleanField(
        help_text="A bot reply is owed and not generated yet; the worker generates and delivers it."
    )
    reply_message_id = serializers.CharField(
        allow_null=True, help_text="The bot reply's `message_id`; null while there is none."
    )
    delivery = serializers.ChoiceField(
        choices=["delivered", "queued", "dead", "cancelled", "in_progress"],
        allow_null=True,
        help_text="What is known of the bot reply's delivery so far: `queued` (owed to the channel; the worker "
        "retries it), `delivered`, `dead`, `cancelled` (an operator took the chat over first: never sent), or "
        "null while there is no bot reply yet.",
    )
    resumed = serializers.BooleanField(help_text="Always false: the worker, not a duplicate, resumes unfinished work.")


class WebhookErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
