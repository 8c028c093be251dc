"""Kinds of channel. A channel's `kind` names one package here; each holds everything that kind
needs (its settings, inbound endpoint, outbound call, error rules, connect panel and tests).

Adding a kind: write its package (see docs/channels/writing-a-kind.md) and add one line to
`KINDS`. Nothing else changes.
"""

from __future__ import annotations

from functools import cache

from django.utils.module_loading import import_string

from channels_app.kinds.base import ChannelKind

# The one list of kinds: dotted paths of each package's `KIND`. The first is the default.
KINDS = (
    "channels_app.kinds.webhook.KIND",
    "channels_app.kinds.vk.KIND",
    "channels_app.kinds.telegram.KIND",
    "channels_app.kinds.webchat.KIND",
)
DEFAULT_KIND = "webhook"


@cache
def kinds_all() -> dict[str, ChannelKind]:
    loaded: dict[str, ChannelKind] = {}
    for path in KINDS:
        kind = import_string(path)
        loaded[kind.name] = kind
    return loaded


def kind_get(name: str) -> ChannelKind:
    """The kind called `name`; an unknown name (a kind removed from KINDS) is the default's
    behaviour never: it raises KeyError, so nothing is sent the wrong way."""
    return kinds_all()[name or DEFAULT_KIND]


def kind_choices() -> list[tuple[str, str]]:
    return [(kind.name, str(kind.label)) for kind in kinds_all().values()]
