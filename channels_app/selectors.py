"""Reads of channels for other rooms (the webhook, the worker)."""

from __future__ import annotations

from bson import ObjectId

from channels_app.models import Channel
from core.caching import LookupCache

_channels_by_id = LookupCache()


def channel_cached(channel_id: ObjectId) -> Channel | None:
    """The channel, read at most once per AUTH_CACHE_TTL_S per process."""
    return _channels_by_id.get_or_load(str(channel_id), lambda: Channel.objects.filter(pk=channel_id).first())


def channels_active_ids(*, channel_ids: list[ObjectId]) -> list[ObjectId]:
    """Those of these channels that exist and are active."""
    return list(Channel.objects.filter(pk__in=channel_ids, is_active=True).values_list("pk", flat=True))
