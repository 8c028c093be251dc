from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class TimeStampedModel(models.Model):
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        abstract = True


class RateCounter(models.Model):
    """One fixed-window rate-limit counter (`core.ratelimit`), shared by every process and host.
    Written with a single upsert + `$inc`; MongoDB's TTL monitor drops it once `expires_at`
    has passed (the TTL index is created by migration 0002)."""

    key = models.CharField(max_length=100)  # "<scope>:<hash of who>", never a raw address
    window = models.BigIntegerField()  # the window's start, in seconds since the epoch
    n = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key", "window"], name="core_ratecounter_key_window")]

    def __str__(self) -> str:
        return f"{self.key} @{self.window}: {self.n}"


class ApiToken(models.Model):
    """A key for the management API (`Authorization: Token <key>`). Only the key's SHA-256 is
    stored (unique, the look-up index) and its first characters for display; the key itself
    is shown once, when it is made (`core.api_tokens.api_token_create`)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens", verbose_name=_("user")
    )
    name = models.CharField(_("name"), max_length=100, blank=True)
    key_hash = models.CharField(_("key hash"), max_length=64, unique=True, editable=False)
    prefix = models.CharField(_("key prefix"), max_length=16, editable=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True, editable=False)
    # Written at most every `core.api_tokens.LAST_USED_RESOLUTION_S`, not on every request.
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})" if self.name else f"{self.prefix}…"

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class UserPreference(models.Model):
    """What an operator chose for themselves, kept on the server so that it follows them to
    their next sign-in, in any browser: the admin's language (`core.preferences`)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="preference", verbose_name=_("user")
    )
    # One of settings.LANGUAGES; blank: the browser's (Accept-Language), as before a choice.
    language = models.CharField(_("language"), max_length=10, blank=True, default="")

    class Meta:
        verbose_name = _("user preference")
        verbose_name_plural = _("user preferences")

    def __str__(self) -> str:
        return self.language or "-"
