"""The admin's add/change form of a VK channel."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from channels_app.kinds.base import KindConfig
from channels_app.kinds.forms import KindChannelForm
from channels_app.kinds.vk.serializers import (
    API_VERSION_PATTERN,
    CODE_MAX_LENGTH,
    DEFAULT_API_VERSION,
    GROUP_ID_MAX,
    NO_SPACE_MESSAGE,
    NO_SPACE_PATTERN,
    SECRET_MAX_LENGTH,
    TOKEN_MAX_LENGTH,
    secret_generate,
    vk_config,
)
from channels_app.models import Channel
from channels_app.services import channel_url_check
from core.errors import ApplicationError


class VkChannelForm(KindChannelForm):
    kind_fields = ("group_id", "access_token", "confirmation_code", "secret", "api_version", "api_base_url")

    group_id = forms.IntegerField(label=_("Community id"), min_value=1, max_value=GROUP_ID_MAX)
    access_token = forms.RegexField(
        regex=NO_SPACE_PATTERN,
        max_length=TOKEN_MAX_LENGTH,
        required=False,
        label=_("Community access key"),
        widget=forms.PasswordInput(render_value=False),
        error_messages={"invalid": NO_SPACE_MESSAGE},
        help_text=_(
            "Manage → API usage → Access tokens, with the Messages permission. Stored encrypted, never shown again."
        ),
    )
    confirmation_code = forms.RegexField(
        regex=NO_SPACE_PATTERN,
        max_length=CODE_MAX_LENGTH,
        label=_("Confirmation code"),
        error_messages={"invalid": NO_SPACE_MESSAGE},
        help_text=_("The string VK's Callback API page says the server must return."),
    )
    secret = forms.RegexField(
        regex=NO_SPACE_PATTERN,
        max_length=SECRET_MAX_LENGTH,
        required=False,
        label=_("Secret key"),
        error_messages={"invalid": NO_SPACE_MESSAGE},
    )
    api_version = forms.RegexField(
        regex=API_VERSION_PATTERN, max_length=16, label=_("API version"), initial=DEFAULT_API_VERSION
    )
    api_base_url = forms.CharField(
        max_length=2048, required=False, label=_("API base URL"), help_text=_("Blank: VK's (VK_API_BASE_URL).")
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        channel: Channel | None = self.instance if self.instance.pk else None
        if channel is None:
            self.fields["access_token"].required = True
            # A fresh secret key, shown this once in the form: the operator copies it into VK's
            # Callback API settings before saving (or replaces it with VK's own).
            self.fields["secret"].required = True
            self.fields["secret"].initial = secret_generate()
            self.fields["secret"].help_text = _(
                "Copy it into VK (Callback API → Server settings → Secret key) now: it is not shown again."
            )
            self.fields["api_base_url"].initial = settings.VK_API_BASE_URL
            return
        options = channel.kind_options or {}
        self.fields["access_token"].help_text = _("Leave blank to keep the stored key.")
        self.fields["secret"].widget = forms.PasswordInput(render_value=False)
        self.fields["secret"].help_text = _("Leave blank to keep the stored secret key.")
        self.initial.update(
            {
                "group_id": options.get("group_id"),
                "confirmation_code": options.get("confirmation_code", ""),
                "api_version": options.get("api_version") or DEFAULT_API_VERSION,
                "api_base_url": channel.settings.url,
            }
        )

    def clean_api_base_url(self) -> str:
        value = str(self.cleaned_data.get("api_base_url") or "").strip()
        if not value:
            return ""
        try:
            return channel_url_check(value).rstrip("/")
        except ApplicationError as exc:
            raise ValidationError(exc.message) from None

    def kind_config(self, channel: Channel | None) -> KindConfig:
        data = self.cleaned_data
        return vk_config(
            group_id=data["group_id"],
            access_token=data.get("access_token") or "",
            confirmation_code=data["confirmation_code"],
            secret=data.get("secret") or "",
            api_version=data["api_version"],
            api_base_url=data.get("api_base_url") or "",
        )
