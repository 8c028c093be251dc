from __future__ import annotations

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
