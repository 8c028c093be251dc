"""Reads of channels for other rooms (the webhook, the worker)."""

from __future__ import annotations

from datetime import datetime

from bson import ObjectId

from channels_app.models import Channel
from core.caching import LookupCache
from core.datetimes import aware
from core.mongo import mongo_collection

_channels_by_id = LookupCache()


def channel_cached(channel_id: ObjectId) -> Channel | None:
    """The channel, read at most once per AUTH_CACHE_TTL_S per process."""
    return _channels_by_id.get_or_load(str(channel_id), lambda: Channel.objects.filter(pk=channel_id).first())


def channels_active_ids(*, channel_ids: list[ObjectId]) -> list[ObjectId]:
    """Those of these channels that exist and are active."""
    return list(Channel.objects.filter(pk__in=channel_ids, is_active=True).values_list("pk", flat=True))


def channel_tests_on_their_way(channel_ids: list[ObjectId]) -> dict[ObjectId, datetime]:
    """Those of these channels a test message was asked for and has no result yet, with when
    it was asked (or taken by the worker): `channels_app.services.channel_test_request`."""
    found = mongo_collection(Channel._meta.db_table).find(
        {
            "_id": {"$in": channel_ids},
            "$or": [{"test_requested_at": {"$exists": True}}, {"test_sending_at": {"$exists": True}}],
        },
        {"test_requested_at": 1, "test_sending_at": 1},
    )
    return {doc["_id"]: aware(doc.get("test_requested_at") or doc["test_sending_at"]) for doc in found}
