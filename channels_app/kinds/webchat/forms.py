"""The admin's add/change form of a web chat channel."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from channels_app.kinds.base import KindConfig
from channels_app.kinds.forms import KindChannelForm
from channels_app.kinds.webchat.options import ORIGINS_MAX, TITLE_MAX_LENGTH, channel_origins, origins_clean
from channels_app.models import Channel


class WebchatChannelForm(KindChannelForm):
    kind_fields = ("allowed_origins", "title")

    allowed_origins = forms.CharField(
        label=_("Allowed origins"),
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text=_(
            "One per line, exactly scheme://host[:port] (e.g. https://shop.example.com), at most %(max)d: "
            "the sites whose pages may embed the widget."
        )
        % {"max": ORIGINS_MAX},
    )
    title = forms.CharField(
        label=_("Title"),
        max_length=TITLE_MAX_LENGTH,
        required=False,
        help_text=_("The chat window's title; blank: a default in the page's language."),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            options = self.instance.kind_options or {}
            self.fields["allowed_origins"].initial = "\n".join(channel_origins(options))
            self.fields["title"].initial = options.get("title", "")

    def clean_allowed_origins(self) -> list[str]:
        lines = [line for line in self.cleaned_data["allowed_origins"].splitlines() if line.strip()]
        try:
            return origins_clean(lines)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def kind_config(self, channel: Channel | None) -> KindConfig:
        origins = self.cleaned_data["allowed_origins"]
        # No service credential: a blank token makes the channel a generated one it never uses.
        return KindConfig(
            url=origins[0], token="", options={"allowed_origins": origins, "title": self.cleaned_data["title"]}
        )
