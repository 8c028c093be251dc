from __future__ import annotations

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
