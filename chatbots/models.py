from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from core.models import TimeStampedModel
from core.validators import validate_no_control_characters


class ChatBot(TimeStampedModel):
    """A bot. Channels authenticate to the webhook with its secret token, which is kept only
    as a SHA-256 hash (the secret is 256 random bits, so a plain hash cannot be reversed)."""

    name = models.CharField(_("name"), max_length=200, validators=[validate_no_control_characters])
    secret_hash = models.CharField(_("secret hash"), max_length=64, unique=True, editable=False)
    secret_prefix = models.CharField(_("secret prefix"), max_length=16, editable=False)

    class Meta:
        verbose_name = _("chat bot")
        verbose_name_plural = _("chat bots")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name
