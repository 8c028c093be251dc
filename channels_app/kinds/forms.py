"""The admin's form for a channel of a native kind: name, bot, active, and the kind's fields
(each kind's package subclasses `KindChannelForm`)."""

from __future__ import annotations

from typing import Any, ClassVar

from django import forms
from django.utils.translation import gettext_lazy as _

from channels_app.kinds.base import KindConfig
from channels_app.models import Channel


class KindChannelForm(forms.ModelForm):
    # The kind's own fields, in order, for the admin's fieldsets.
    kind_fields: ClassVar[tuple[str, ...]] = ()

    class Meta:
        model = Channel
        fields = ("name", "chat_bot", "is_active", "typing_events")
        help_texts = {
            "typing_events": _(
                "Show the customer that the bot is writing, the service's way (where it has one). Best effort."
            )
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is None and "typing_events" in self.fields:
            self.initial.setdefault("typing_events", True)

    def kind_config(self, channel: Channel | None) -> KindConfig:
        """The channel's settings from the cleaned form; `channel` is the one changed (None on
        add): a secret left blank on a change keeps the stored one."""
        raise NotImplementedError
