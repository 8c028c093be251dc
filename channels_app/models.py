from __future__ import annotations

from bson import ObjectId
from django.db import models
from django.utils.translation import gettext_lazy as _
from django_mongodb_backend.fields import EmbeddedModelField
from django_mongodb_backend.models import EmbeddedModel

from chatbots.models import ChatBot
from core.fields import EncryptedCharField
from core.models import TimeStampedModel
from core.validators import validate_no_control_characters

URL_MAX_LENGTH = 2048


class DeliveryState(models.TextChoices):
    PENDING = "pending", _("pending")
    DELIVERED = "delivered", _("delivered")
    FAILED = "failed", _("failed")
    DEAD = "dead", _("dead")
    # Its channel is inactive or gone: waits, without blocking anyone, until it is active again.
    PARKED = "parked", _("parked")
    # Never to be sent: an operator took the dialogue over before it was delivered. Final.
    CANCELLED = "cancelled", _("cancelled")


class ChannelSettings(EmbeddedModel):
    """Stored inside the channel document as `settings: {url, token}`, the existing shape."""

    url = models.URLField(_("URL"), max_length=URL_MAX_LENGTH)
    # Sent to the channel with every reply, so it cannot be hashed (it is the channel's
    # credential to check that a reply comes from us, not ours to check): stored encrypted.
    token = EncryptedCharField(_("token"), max_length=128)

    def __str__(self) -> str:
        return self.url


class Channel(TimeStampedModel):
    chat_bot_id: ObjectId  # the ForeignKey's column (django-stubs cannot infer it for ObjectId keys)
    name = models.CharField(_("name"), max_length=200, validators=[validate_no_control_characters])
    chat_bot = models.ForeignKey(ChatBot, on_delete=models.CASCADE, related_name="channels", verbose_name=_("chat bot"))
    settings = EmbeddedModelField(ChannelSettings, verbose_name=_("settings"))
    is_active = models.BooleanField(_("active"), default=True)
    # Which package of `channels_app.kinds` receives and delivers for this channel; fixed at
    # creation. For a native kind `settings.url` is its service's API and `settings.token` the
    # credential there (a Telegram bot token, a VK community key).
    kind = models.CharField(_("kind"), max_length=32, default="webhook", editable=False)
    # The kind's own settings (allowed origins, a community id, a confirmation code...), never a
    # secret; `kind_secret` holds the kind's shared secret with its service, encrypted.
    kind_options = models.JSONField(_("kind options"), default=dict, blank=True, editable=False)
    kind_secret = EncryptedCharField(_("kind secret"), max_length=256, blank=True, default="", editable=False)
    # Off by default: a channel that never asked for them must not receive a new kind of POST.
    typing_events = models.BooleanField(
        _("typing events"),
        default=False,
        help_text=_(
            'Also POST {"type": "typing", "chat_id": ..., "state": "on"} to the URL when the bot starts '
            'writing a reply, and "state": "off" when it decides not to reply after all. Best effort: '
            "never retried, and a failure never delays a reply. The channel must ignore types and fields "
            "it does not know."
        ),
    )
    # Denormalised from the latest delivery attempt, for the operators' channel list.
    last_delivery_state = models.CharField(
        _("last delivery state"), max_length=16, choices=DeliveryState.choices, blank=True, default=""
    )
    last_delivery_at = models.DateTimeField(_("last delivery time"), null=True, blank=True)
    # The circuit breaker, written by the worker: after WORKER_BREAKER_THRESHOLD failed
    # attempts in a row nothing is sent to the channel until `breaker_open_until`, then one
    # probe decides whether it closes.
    consecutive_failures = models.PositiveIntegerField(_("failures in a row"), default=0, editable=False)
    breaker_open_until = models.DateTimeField(_("breaker open until"), null=True, blank=True, editable=False)
    # "Send test message": the admin asks, the worker sends and records the result here.
    last_test_at = models.DateTimeField(_("last test"), null=True, blank=True, editable=False)
    last_test_ok = models.BooleanField(_("last test passed"), null=True, blank=True, editable=False)
    last_test_result = models.CharField(_("last test result"), max_length=500, blank=True, default="", editable=False)
    # Standard Webhooks signing secrets (`whsec_<base64>`): every reply is signed with the
    # current one and, until `previous_signing_secret_until`, with the one it replaced, so a
    # channel can switch to a rotated secret without rejecting replies meanwhile. Stored
    # encrypted (we sign with them, so they cannot be hashed); shown once, when made, never logged.
    signing_secret = EncryptedCharField(_("signing secret"), max_length=128, blank=True, default="", editable=False)
    previous_signing_secret = EncryptedCharField(
        _("previous signing secret"), max_length=128, blank=True, default="", editable=False
    )
    previous_signing_secret_until = models.DateTimeField(
        _("previous signing secret valid until"), null=True, blank=True, editable=False
    )

    class Meta:
        verbose_name = _("channel")
        verbose_name_plural = _("channels")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["chat_bot", "is_active"], name="channel_bot_active")]

    def __str__(self) -> str:
        return self.name
