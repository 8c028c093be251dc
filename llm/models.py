from __future__ import annotations

from django.core.validators import MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from core.fields import EncryptedCharField
from core.models import TimeStampedModel
from core.validators import validate_no_control_characters

API_KEY_MAX_LENGTH = 512


class LLMProvider(TimeStampedModel):
    """A server speaking OpenAI's chat-completions protocol (OpenAI, a tenant's own key, vLLM,
    Ollama, ...), named by the bots that use it (`ChatBot.llm_provider_id`). Bots naming none
    use the platform's default (LLM_BACKEND, OPENAI_BASE_URL, OPENAI_API_KEY).

    The API key is stored encrypted (core.fields) and is write-only: the admin and the API
    never show it, they only replace it. The limits are optional (null: none)."""

    name = models.CharField(_("name"), max_length=200, unique=True, validators=[validate_no_control_characters])
    base_url = models.URLField(_("base URL"), max_length=2048, help_text=_("e.g. https://api.openai.com/v1"))
    api_key = EncryptedCharField(_("API key"), max_length=API_KEY_MAX_LENGTH, blank=True, default="")
    max_concurrent = models.PositiveIntegerField(
        _("max concurrent requests"), null=True, blank=True, validators=[MinValueValidator(1)]
    )
    requests_per_minute = models.PositiveIntegerField(
        _("requests per minute"), null=True, blank=True, validators=[MinValueValidator(1)]
    )
    tokens_per_minute = models.PositiveIntegerField(
        _("tokens per minute"), null=True, blank=True, validators=[MinValueValidator(1)]
    )

    class Meta:
        verbose_name = _("LLM provider")
        verbose_name_plural = _("LLM providers")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
