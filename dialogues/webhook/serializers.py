"""The webhook's request and response shapes. Strict: a field that should be a string must be
a JSON string (DRF's CharField would turn 123 into "123" and reject {"$gt": ""} only by
accident), so mistyped input is a 400 and operator objects never reach a query."""

from __future__ import annotations

import re
from typing import Any

from rest_framework import serializers

from core.serializers import StrictCharField, StrictIntegerField, strict_name_field
from dialogues.models import (
    ATTACHMENT_MIME_TYPE_MAX_LENGTH,
    ATTACHMENT_NAME_MAX_LENGTH,
    ATTACHMENT_SIZE_MAX,
    ATTACHMENT_URL_MAX_LENGTH,
    ATTACHMENTS_MAX,
    ID_MAX_LENGTH,
)

TEXT_MAX_LENGTH = 32 * 1024
BODY_MAX_BYTES = 1024 * 1024

# The whole rule for an attachment's URL, so that the schema states exactly what is accepted:
# https, a host, no user:password@ (it would hide the real host behind a familiar name), and no
# whitespace or control characters anywhere.
_URL_CHAR = "[^\\u0000-\\u0020\\u007f-\\u009f]"
HTTPS_URL_PATTERN = f"^https://[^/?#@\\u0000-\\u0020\\u007f-\\u009f]+([/?#]{_URL_CHAR}*)?$"
# RFC 6838 `type/subtype`, without parameters.
_MIME_NAME = "[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*"
MIME_TYPE_PATTERN = f"^{_MIME_NAME}/{_MIME_NAME}$"


def _whole_match(value: str, pattern: str, field: serializers.Field) -> str:
    if re.fullmatch(pattern, value) is None:
        raise serializers.ValidationError(field.error_messages["pattern"], code="pattern")
    return value


class WebhookAttachmentSerializer(serializers.Serializer):
    """A file the sender attached, by link: the platform never fetches it (a vision model's
    provider may, see the bot's `vision`)."""

    url = StrictCharField(
        max_length=ATTACHMENT_URL_MAX_LENGTH,
        trim_whitespace=False,
        pattern=HTTPS_URL_PATTERN,
        pattern_message="Must be an https:// URL with a host, without credentials, spaces or control characters.",
        help_text="Where the file is: an https URL, at most 2048 characters.",
    )
    mime_type = StrictCharField(
        required=False,
        allow_null=True,
        max_length=ATTACHMENT_MIME_TYPE_MAX_LENGTH,
        trim_whitespace=False,
        pattern=MIME_TYPE_PATTERN,
        pattern_message="Must be a media type, type/subtype, such as image/png (no parameters).",
        help_text="The file's media type, `type/subtype` (e.g. `image/jpeg`, `application/pdf`).",
    )
    name = strict_name_field(
        required=False,
        allow_null=True,
        max_length=ATTACHMENT_NAME_MAX_LENGTH,
        help_text="The file's name as the customer sees it. No control characters; surrounding whitespace is trimmed.",
    )
    size = StrictIntegerField(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=ATTACHMENT_SIZE_MAX,
        help_text="The file's size in bytes, at most 2 GiB.",
    )

    # The patterns are checked with `re.search`, where `$` also matches before a final line break
    # (JSON Schema's `$` does not): a whole match here, so "https://host\n" is refused as stated.
    def validate_url(self, value: str) -> str:
        return _whole_match(value, HTTPS_URL_PATTERN, self.fields["url"])

    def validate_mime_type(self, value: str | None) -> str | None:
        return None if value is None else _whole_match(value, MIME_TYPE_PATTERN, self.fields["mime_type"])

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        # Every key present, null for what was not said: the stored shape (dialogues.models.Attachment).
        values = super().to_internal_value(data)
        return {name: values.get(name) for name in ("url", "mime_type", "name", "size")}


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
    text = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=TEXT_MAX_LENGTH,
        trim_whitespace=False,
        help_text="What the sender wrote. Required, and not empty, unless the message has `attachments`.",
    )
    attachments: serializers.ListSerializer[Any] = serializers.ListSerializer(
        child=WebhookAttachmentSerializer(),
        required=False,
        max_length=ATTACHMENTS_MAX,
        help_text="Optional: up to 10 files sent with the message, by link. With attachments, `text` may be "
        "left out or empty.",
    )
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

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # A message says something: text, or at least one file.
        if not attrs.get("attachments"):
            if "text" not in attrs:
                raise serializers.ValidationError({"text": [self.fields["text"].error_messages["required"]]})
            if attrs["text"] == "":
                raise serializers.ValidationError({"text": [self.fields["text"].error_messages["blank"]]})
        return attrs


def field_errors(errors: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's errors with nested ones flattened to the field's path, `attachments[2].url`, so
    every 400 keeps the one shape `{"<field>": ["<message>", ...]}` (`core.errors`)."""
    flat: dict[str, list[str]] = {}
    if isinstance(errors, dict):
        for key, value in errors.items():
            if key == "non_field_errors" and prefix:
                path = prefix
            elif isinstance(key, int):  # a list's item (DRF keys a list's errors by index)
                path = f"{prefix}[{key}]"
            else:
                path = f"{prefix}.{key}" if prefix else str(key)
            flat.update(_merge(flat, field_errors(value, path)))
    elif isinstance(errors, list) and any(isinstance(item, dict | list) for item in errors):
        for index, item in enumerate(errors):
            if item:
                flat.update(_merge(flat, field_errors(item, f"{prefix}[{index}]")))
    else:
        messages = errors if isinstance(errors, list) else [errors]
        flat[prefix] = [str(message) for message in messages]
    return flat


def _merge(flat: dict[str, list[str]], more: dict[str, list[str]]) -> dict[str, list[str]]:
    return {path: [*flat.get(path, []), *messages] for path, messages in more.items()}


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
