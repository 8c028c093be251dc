from __future__ import annotations

import functools
import re

from bson import ObjectId
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _
from django_mongodb_backend.fields import ObjectIdField

from core.fields import EncryptedCharField
from core.models import TimeStampedModel
from core.validators import validate_no_control_characters

# The longest automatic pause: a year.
PAUSE_MAX_MINUTES = 525_600
# Bursts (`reply_policy` "burst"): bounds of the waits, in milliseconds.
BURST_QUIET_MIN_MS = 100
BURST_MAX_WAIT_MAX_MS = 120_000


HANDOFF_TEXT_DEFAULT = "I am passing your conversation to a human operator, who will answer you here shortly."


@functools.lru_cache(maxsize=1024)
def _keywords_pattern(keywords: str) -> re.Pattern[str] | None:
    words = sorted({word.strip().casefold() for word in keywords.split(",") if word.strip()}, key=len, reverse=True)
    if not words:
        return None
    # From the start of a word, so inflected forms match too ("оператор" finds "оператора",
    # "operator" finds "Operators, please!") but a word that merely contains one does not
    # ("cooperator").
    return re.compile("(?<!\\w)(?:" + "|".join(re.escape(word) for word in words) + ")")


def handoff_keyword_in(keywords: str, text: str) -> str | None:
    """The first of the comma-separated `keywords` found in `text` at the start of a word
    (case-insensitive, any script), or None."""
    pattern = _keywords_pattern(keywords or "")
    if pattern is None or not text:
        return None
    found = pattern.search(text.casefold())
    return found.group(0) if found else None


class ChatBot(TimeStampedModel):
    """A bot. Channels authenticate to the webhook with its secret token, which is kept only
    as a SHA-256 hash (the secret is 256 random bits, so a plain hash cannot be reversed)."""

    name = models.CharField(_("name"), max_length=200, validators=[validate_no_control_characters])
    # Channels pick their bot by name, so no two bots may share one, whatever its case: the
    # name case-folded (`chatbots.services.chatbot_name_key`), under a unique index, so that
    # of two bots named at the same moment exactly one gets the name. Null on a bot that
    # shares its name with an older one from before the rule (migration 0011): those are
    # marked in the admin's list instead of being renamed behind the operators' backs.
    name_key = models.CharField(max_length=200, unique=True, null=True, default=None, editable=False)
    secret_hash = models.CharField(_("secret hash"), max_length=64, unique=True, editable=False)
    secret_prefix = models.CharField(_("secret prefix"), max_length=16, editable=False)
    # After a rotation with an overlap, the old secret keeps working until `previous_secret_until`.
    # Unique (a partial index: only bots that have one) so that authentication stays one
    # indexed look-up when the current hash misses.
    previous_secret_hash = models.CharField(
        _("previous secret hash"), max_length=64, unique=True, null=True, default=None, editable=False
    )
    previous_secret_until = models.DateTimeField(
        _("previous secret works until"), null=True, default=None, editable=False
    )

    # The LLM, per bot. Blank or null means the platform's default (settings in brackets).
    system_prompt = models.TextField(_("system prompt"), blank=True, default="")
    # An `llm.LLMProvider` (an id, not a foreign key: `llm` sits above this app). None: the
    # platform's default provider (LLM_BACKEND, OPENAI_*).
    llm_provider_id = ObjectIdField(_("LLM provider"), null=True, blank=True, default=None)
    llm_model = models.CharField(_("LLM model"), max_length=200, blank=True, default="")  # LLM_MODEL
    temperature = models.FloatField(
        _("temperature"), null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(2.0)]
    )
    max_output_tokens = models.PositiveIntegerField(
        _("max output tokens"), null=True, blank=True, validators=[MinValueValidator(1)]
    )
    context_messages = models.PositiveIntegerField(  # LLM_CONTEXT_MESSAGES
        _("context messages"), null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(1000)]
    )
    # Images the customer sends go to the model as images (OpenAI's `image_url` parts); without
    # it, and for every other file, the model is told in words that a file came.
    vision = models.BooleanField(_("vision"), default=False, help_text=_("the model accepts images"))
    # Sent instead of a reply when the LLM keeps failing (LLM_MAX_ATTEMPTS); without it the
    # reply is marked failed.
    fallback_text = models.TextField(_("fallback text"), blank=True, default="")

    # How customer messages are answered. "each": one reply per message, as they come.
    # "burst": once the chat has been quiet for `burst_quiet_ms`, or `burst_max_wait_ms` after
    # the first unanswered message, one reply to every message not answered yet.
    class ReplyPolicy(models.TextChoices):
        EACH = "each", _("one reply per message")
        BURST = "burst", _("one reply per burst of messages")

    reply_policy = models.CharField(
        _("reply policy"),
        max_length=8,
        choices=ReplyPolicy.choices,
        default=ReplyPolicy.EACH,
        help_text=_(
            "Each: every customer message gets its own reply. Burst: messages written in quick succession "
            "get one reply, once the customer stops typing."
        ),
    )
    burst_quiet_ms = models.PositiveIntegerField(
        _("burst: quiet time (ms)"),
        default=1500,
        validators=[MinValueValidator(BURST_QUIET_MIN_MS), MaxValueValidator(BURST_MAX_WAIT_MAX_MS)],
        help_text=_("Burst: the reply is made once the chat has been quiet this long, in milliseconds."),
    )
    burst_max_wait_ms = models.PositiveIntegerField(
        _("burst: longest wait (ms)"),
        default=8000,
        validators=[MinValueValidator(BURST_QUIET_MIN_MS), MaxValueValidator(BURST_MAX_WAIT_MAX_MS)],
        help_text=_(
            "Burst: the reply is made at the latest this long after the first unanswered message, even if the "
            "customer keeps writing, in milliseconds."
        ),
    )

    # Hand-off to humans, per dialogue (minutes; 0 = no pause).
    pause_after_employee_minutes = models.PositiveIntegerField(
        _("pause after an employee's message (minutes)"),
        default=0,
        validators=[MaxValueValidator(PAUSE_MAX_MINUTES)],
        help_text=_("An employee's message arriving from the channel pauses the bot in that dialogue this long."),
    )
    # The bot asks for a human: a customer message holding one of `handoff_keywords` (comma
    # separated, any language, found at the start of a word, case-insensitively), or the model calling
    # the `handoff_to_human` tool (`handoff_tool`, OpenAI-compatible backends), makes the bot send
    # `handoff_text`, pause in that dialogue until an operator gives it back, and put the dialogue
    # in the operators' inbox with the reason.
    handoff_keywords = models.CharField(
        _("hand-off keywords"),
        max_length=500,
        blank=True,
        default="",
        help_text=_('Comma-separated words or phrases, any language, e.g. "operator, human, оператор, человек".'),
    )
    handoff_tool = models.BooleanField(
        _("the model may hand off"),
        default=False,
        help_text=_("Offer the model a handoff_to_human tool (OpenAI-compatible backends)."),
    )
    handoff_text = models.TextField(
        _("hand-off text"),
        blank=True,
        default="",
        help_text=_("Sent to the customer when the bot hands the chat to a human. Blank: a default text."),
    )
    pause_after_operator_reply_minutes = models.PositiveIntegerField(
        _("pause after an operator's reply (minutes)"),
        default=30,
        validators=[MaxValueValidator(PAUSE_MAX_MINUTES)],
        help_text=_("An operator's reply sent from the admin or the API pauses the bot in that dialogue this long."),
    )

    # Signed inbound webhooks (Standard Webhooks). With `require_signed_webhooks`, every message
    # a channel sends the webhook must carry a `webhook-signature` made with this secret
    # (`whsec_<base64>`), within 5 minutes of its `webhook-timestamp`, and a `webhook-id` not
    # seen before. Stored encrypted, like the channels' signing secrets: verifying an HMAC needs
    # the secret itself, so it cannot be hashed. Shown once, when made, never logged. After a
    # rotation with an overlap, signatures made with the previous one are accepted until
    # `previous_webhook_signing_secret_until`.
    require_signed_webhooks = models.BooleanField(
        _("require signed webhooks"),
        default=False,
        help_text=_(
            "Refuse webhook messages without a valid Standard Webhooks signature made with the bot's "
            "webhook signing secret."
        ),
    )
    webhook_signing_secret = EncryptedCharField(
        _("webhook signing secret"), max_length=128, blank=True, default="", editable=False
    )
    previous_webhook_signing_secret = EncryptedCharField(
        _("previous webhook signing secret"), max_length=128, blank=True, default="", editable=False
    )
    previous_webhook_signing_secret_until = models.DateTimeField(
        _("previous webhook signing secret valid until"), null=True, blank=True, editable=False
    )

    class Meta:
        verbose_name = _("chat bot")
        verbose_name_plural = _("chat bots")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class SignedWebhookId(models.Model):
    """A `webhook-id` a bot's signed webhook has accepted: the replay guard. Unique per bot, so
    of two requests carrying one id (a replay, or the same request twice at once) exactly one
    inserts it; MongoDB's TTL monitor drops it after `expires_at` (a few minutes past the
    signature's 5-minute window, after which a replay fails on its timestamp anyway). The TTL
    index is created by migration 0006."""

    # The bot's id, not a foreign key: a bot's deletion need not visit these (they expire
    # within minutes), and the admin's deletion summary does not list them.
    chat_bot_id = ObjectIdField()
    webhook_id = models.CharField(max_length=256)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chat_bot_id", "webhook_id"], name="chatbots_signedwebhookid_bot_id")
        ]

    def __str__(self) -> str:
        return self.webhook_id


class CannedReply(models.Model):
    """A reply an operator inserts into the transcript by typing `/` and its shortcut."""

    chat_bot_id: ObjectId
    chat_bot = models.ForeignKey(
        ChatBot, on_delete=models.CASCADE, related_name="canned_replies", verbose_name=_("chat bot")
    )
    shortcut = models.SlugField(
        _("shortcut"), max_length=40, allow_unicode=True, help_text=_("Typed after / in the reply box, e.g. refund.")
    )
    text = models.TextField(_("text"), max_length=4000)

    class Meta:
        verbose_name = _("canned reply")
        verbose_name_plural = _("canned replies")
        ordering = ["shortcut"]
        constraints = [models.UniqueConstraint(fields=["chat_bot", "shortcut"], name="uniq_canned_shortcut")]
        # The backend's unique constraints are partial indexes, which the embedded server does
        # not read through (docs/internals.md, "Known quirks"): the bot's list reads this one.
        indexes = [models.Index(fields=["chat_bot", "shortcut"], name="canned_bot_shortcut")]

    def __str__(self) -> str:
        return f"/{self.shortcut}"
