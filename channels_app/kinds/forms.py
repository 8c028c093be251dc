"""The admin's form for a channel of a native kind: name, bot, active, and the kind's fields
(each kind's package subclasses `KindChannelForm`)."""

from __future__ import annotations

from typing import ClassVar

from django import forms

from channels_app.kinds.base import KindConfig
from channels_app.models import Channel


class KindChannelForm(forms.ModelForm):
    # The kind's own fields, in order, for the admin's fieldsets.
    kind_fields: ClassVar[tuple[str, ...]] = ()

    class Meta:
        model = Channel
        fields = ("name", "chat_bot", "is_active", "typing_events")

    def kind_config(self, channel: Channel | None) -> KindConfig:
        """The channel's settings from the cleaned form; `channel` is the one changed (None on
        add): a secret left blank on a change keeps the stored one."""
        raise NotImplementedError
