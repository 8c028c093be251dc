from __future__ import annotations

from typing import Any

from rest_framework import exceptions, serializers

from chatbots.models import BURST_MAX_WAIT_MAX_MS, BURST_QUIET_MIN_MS, PAUSE_MAX_MINUTES, ChatBot
from chatbots.services import llm_provider_known
from core.serializers import (
    CONTROL_CHARACTERS_MESSAGE,
    NO_CONTROL_CHARACTERS_PATTERN,
    BaseModelSerializer,
    ObjectIdField,
    StrictBooleanField,
    StrictCharField,
    StrictFloatField,
    StrictIntegerField,
    strict_name_field,
)

UNKNOWN_LLM_PROVIDER = "No LLM provider with this id."
# Generous bounds that still keep one bot's settings from filling a request or a document.
SYSTEM_PROMPT_MAX_LENGTH = 20_000
FALLBACK_TEXT_MAX_LENGTH = 4_000
MAX_OUTPUT_TOKENS_LIMIT = 1_000_000


# The bot's LLM settings. Blank or null means the platform's default.
LLM_SETTINGS = [
    "system_prompt",
    "llm_provider_id",
    "llm_model",
    "temperature",
    "max_output_tokens",
    "context_messages",
    "fallback_text",
    "vision",
]
# One reply per message, or one per burst of messages.
REPLY_SETTINGS = ["reply_policy", "burst_quiet_ms", "burst_max_wait_ms"]
# When the bot steps aside for a human in a dialogue (minutes; 0: never).
HANDOFF_SETTINGS = [
    "pause_after_employee_minutes",
    "pause_after_operator_reply_minutes",
    "handoff_keywords",
    "handoff_tool",
    "handoff_text",
]


class ChatBotSerializer(BaseModelSerializer):
    """What reads show: the secret's prefix only, never the secret."""

    class Meta:
        model = ChatBot
        fields = [
            "id",
            "name",
            "secret_prefix",
            *LLM_SETTINGS,
            *REPLY_SETTINGS,
            *HANDOFF_SETTINGS,
            "require_signed_webhooks",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "secret_prefix", "created_at", "updated_at"]


class ChatBotWithSecretSerializer(ChatBotSerializer):
    """Create and rotate only: the plaintext secret, shown this once."""

    secret_token = serializers.CharField(
        read_only=True, help_text="The bot's secret. Shown only in this response; store it now."
    )

    class Meta(ChatBotSerializer.Meta):
        fields = [*ChatBotSerializer.Meta.fields, "secret_token"]


class ChatBotCreatedSerializer(ChatBotWithSecretSerializer):
    """Create only: the secret and the webhook signing secret, shown this once."""

    webhook_signing_secret = serializers.CharField(
        read_only=True,
        help_text="The bot's Standard Webhooks signing secret (`whsec_...`), for signing requests to the webhook "
        "when `require_signed_webhooks` is on. Shown only in this response; store it now "
        "(`rotate_webhook_signing_secret` makes a new one).",
    )

    class Meta(ChatBotWithSecretSerializer.Meta):
        fields = [*ChatBotWithSecretSerializer.Meta.fields, "webhook_signing_secret"]


class ChatBotInputSerializer(serializers.Serializer):
    """Create and update. The LLM settings are optional everywhere: left out (even from a PUT)
    they keep their value, so a client that only renames a bot never resets them."""

    name = strict_name_field(max_length=200, help_text="No control characters; not blank.")
    system_prompt = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=SYSTEM_PROMPT_MAX_LENGTH,
        trim_whitespace=False,
        help_text="Sent first, as the system message. Blank: none.",
        style={"base_template": "textarea.html"},
    )
    llm_provider_id = ObjectIdField(
        required=False,
        allow_null=True,
        help_text="The `/api/llm_providers/` provider whose server answers. Null: the platform's default "
        "(LLM_BACKEND, OPENAI_BASE_URL, OPENAI_API_KEY).",
    )
    llm_model = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=200,
        pattern=NO_CONTROL_CHARACTERS_PATTERN,
        pattern_message=CONTROL_CHARACTERS_MESSAGE,
        help_text="Blank: the platform's LLM_MODEL.",
    )
    temperature = StrictFloatField(
        required=False, allow_null=True, min_value=0.0, max_value=2.0, help_text="0-2. Null: the server's default."
    )
    max_output_tokens = StrictIntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=MAX_OUTPUT_TOKENS_LIMIT,
        help_text="At least 1. Null: the server's default.",
    )
    context_messages = StrictIntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=1000,
        help_text="How many of the dialogue's latest messages (the customer's, bot replies and employees') the "
        "LLM sees, 1-1000. Null: LLM_CONTEXT_MESSAGES.",
    )
    fallback_text = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=FALLBACK_TEXT_MAX_LENGTH,
        help_text="Sent to the customer as the bot reply when the LLM keeps failing. Blank: no bot reply; the "
        "customer's message is marked failed.",
        style={"base_template": "textarea.html"},
    )
    vision = StrictBooleanField(
        required=False,
        help_text="`true`: the model accepts images: the customer's png, jpeg, gif and webp attachments go to it as "
        "images. `false` (the default): it is told in words which files came (name, type, size).",
    )
    reply_policy = serializers.ChoiceField(
        required=False,
        choices=ChatBot.ReplyPolicy.choices,
        help_text="`each` (default): every customer message gets its own reply. `burst`: messages written in "
        "quick succession get one reply, made once the chat has been quiet for `burst_quiet_ms` or "
        "`burst_max_wait_ms` after the first unanswered message, whichever comes first; the reply's payload "
        "lists the messages it answers in `answers`.",
    )
    burst_quiet_ms = StrictIntegerField(
        required=False,
        min_value=BURST_QUIET_MIN_MS,
        max_value=BURST_MAX_WAIT_MAX_MS,
        help_text="Burst: how long the chat must be quiet before the reply is made, in milliseconds. Default 1500.",
    )
    burst_max_wait_ms = StrictIntegerField(
        required=False,
        min_value=BURST_QUIET_MIN_MS,
        max_value=BURST_MAX_WAIT_MAX_MS,
        help_text="Burst: the longest wait after the first unanswered message, in milliseconds, even while the "
        "customer keeps writing. Default 8000. Below `burst_quiet_ms`, every burst is answered this long after "
        "its first message.",
    )
    handoff_keywords = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=500,
        help_text="Comma-separated words or phrases, any language (`operator, human, оператор, человек`): a "
        "customer message holding one at the start of a word (so `оператор` finds `оператора`), in any case, is "
        "answered with `handoff_text`, and the "
        "bot pauses in that dialogue until an operator gives it back.",
    )
    handoff_tool = StrictBooleanField(
        required=False,
        help_text="`true`: the model (OpenAI-compatible backends) is offered a `handoff_to_human` tool with a "
        "`reason`; when it calls it, the bot hands off as for a keyword, with that reason.",
    )
    handoff_text = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=FALLBACK_TEXT_MAX_LENGTH,
        help_text="Sent to the customer when the bot hands the chat to a human. Blank: a default text.",
        style={"base_template": "textarea.html"},
    )
    pause_after_employee_minutes = StrictIntegerField(
        required=False,
        min_value=0,
        max_value=PAUSE_MAX_MINUTES,
        help_text="A message from an employee on the channel's side (`message_sender: employee`) pauses the bot "
        "in that dialogue this long, in minutes. 0: no pause.",
    )
    pause_after_operator_reply_minutes = StrictIntegerField(
        required=False,
        min_value=0,
        max_value=PAUSE_MAX_MINUTES,
        help_text="A message from an employee written here (an operator's reply, in the admin or the API) "
        "pauses the bot in that dialogue this long, in minutes. 0: no pause.",
    )
    require_signed_webhooks = StrictBooleanField(
        required=False,
        help_text="`true`: the webhook accepts this bot's messages only with a valid Standard Webhooks "
        "signature (`webhook-id`, `webhook-timestamp`, `webhook-signature`) made with its webhook signing "
        "secret, within 5 minutes, each `webhook-id` once. Default `false`.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # Once the body is valid (a malformed one is a 400): the provider it names must exist,
        # or it is a 404 naming the field, as for a channel's unknown `chat_bot_id`.
        provider_id = attrs.get("llm_provider_id")
        if provider_id is not None and not llm_provider_known(provider_id):
            raise exceptions.NotFound({"llm_provider_id": [UNKNOWN_LLM_PROVIDER]})
        return attrs


# The longest overlap a rotation may give the old secret: 30 days.
ROTATION_OVERLAP_MAX_MINUTES = 43_200


class RotateTokenInputSerializer(serializers.Serializer):
    overlap_minutes = StrictIntegerField(
        required=False,
        min_value=0,
        max_value=ROTATION_OVERLAP_MAX_MINUTES,
        help_text="How long the replaced secret keeps working, 0-43200 minutes. "
        "Left out: the server's BOT_SECRET_OVERLAP_S (0 unless configured: it stops at once).",
    )


class ChatBotRotatedSerializer(ChatBotWithSecretSerializer):
    """Rotate only: the new secret, and until when the replaced one still works."""

    previous_secret_until = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="When the replaced secret stops working. Null: it already has (no overlap).",
    )

    class Meta(ChatBotWithSecretSerializer.Meta):
        fields = [*ChatBotWithSecretSerializer.Meta.fields, "previous_secret_until"]


class WebhookSigningSecretRotateInputSerializer(serializers.Serializer):
    overlap_minutes = StrictIntegerField(
        required=False,
        min_value=0,
        max_value=ROTATION_OVERLAP_MAX_MINUTES,
        help_text="How long signatures made with the replaced secret are still accepted, 0-43200 minutes. "
        "Left out or 0: not at all.",
    )


class ChatBotWebhookSigningSecretSerializer(ChatBotSerializer):
    """`rotate_webhook_signing_secret` only: the new signing secret, shown this once."""

    webhook_signing_secret = serializers.CharField(
        read_only=True, help_text="The new Standard Webhooks signing secret (`whsec_...`). Shown only in this response."
    )
    previous_webhook_signing_secret_until = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="Until then signatures made with the replaced secret are accepted too. Null: they are not.",
    )

    class Meta(ChatBotSerializer.Meta):
        fields = [*ChatBotSerializer.Meta.fields, "webhook_signing_secret", "previous_webhook_signing_secret_until"]
