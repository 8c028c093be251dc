from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from channels_app.kinds.base import KindConfig
from channels_app.kinds.forms import KindChannelForm
from channels_app.kinds.telegram.config import (
    API_BASE_MAX_LENGTH,
    api_base_check,
    api_base_default,
    bot_token_check,
    secret_token_generate,
    telegram_config,
)
from channels_app.models import Channel
from core.errors import ApplicationError


class TelegramChannelForm(KindChannelForm):
    kind_fields = ("bot_token", "api_base_url")

    bot_token = forms.CharField(
        label=_("Bot token"),
        required=False,
        max_length=128,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text=_("From @BotFather. Stored encrypted and never shown again; leave blank to keep the current one."),
    )
    api_base_url = forms.CharField(
        label=_("Bot API base URL"),
        required=False,
        max_length=API_BASE_MAX_LENGTH,
        help_text=_("Blank: TELEGRAM_API_BASE_URL (https://api.telegram.org), or a local Bot API server."),
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is None:
            self.fields["bot_token"].required = True
            self.fields["bot_token"].help_text = _("From @BotFather. Stored encrypted and never shown again.")
        elif self.instance.settings is not None:
            self.initial.setdefault("api_base_url", self.instance.settings.url)
        self.fields["api_base_url"].widget.attrs.setdefault("placeholder", api_base_default())

    def clean_bot_token(self) -> str:
        value = str(self.cleaned_data.get("bot_token") or "").strip()
        if not value:
            return ""
        try:
            return bot_token_check(value)
        except ApplicationError as exc:
            raise forms.ValidationError(exc.message) from None

    def clean_api_base_url(self) -> str:
        value = str(self.cleaned_data.get("api_base_url") or "").strip()
        if not value:
            return ""
        try:
            return api_base_check(value)
        except ApplicationError as exc:
            raise forms.ValidationError(exc.message) from None

    def kind_config(self, channel: Channel | None) -> KindConfig:
        # A new channel gets its secret token; a changed one keeps its own ("" keeps it).
        secret = secret_token_generate() if channel is None or not channel.kind_secret else ""
        return telegram_config(
            bot_token=self.cleaned_data["bot_token"], api_base_url=self.cleaned_data["api_base_url"], secret=secret
        )
