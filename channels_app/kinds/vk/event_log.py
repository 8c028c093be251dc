"""The Callback API events a channel has already handled, by VK's `event_id`, for a day.

VK resends an event it got no `ok` for (a slow answer, a 5xx, a lost connection) with the same
`event_id`. The stored message's id (`vk-<group>-<message id>`) is what makes a resend one
message, under the ingest's unique index, whatever the event id; this log only answers a known
resend at once, without the ingest's work. An event is written here after it was handled: one
written before, then lost to an outage, would drop VK's resend of a message never stored."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from django.utils import timezone
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from core.mongo import mongo_collection

COLLECTION = "vk_callback_events"
TTL_INDEX = "vk_callback_events_ttl"
# VK stops resending an event long before this.
KEEP = timedelta(days=1)

_indexed = threading.Event()


def _collection() -> Collection[dict[str, Any]]:
    collection = mongo_collection(COLLECTION)
    if not _indexed.is_set():
        # Idempotent: creating an index that exists with the same options does nothing. The
        # `_id` index (unique) is the log's key; this one expires its documents.
        collection.create_index("expires_at", name=TTL_INDEX, expireAfterSeconds=0)
        _indexed.set()
    return collection


def _key(channel_id: str, event_id: str) -> str:
    return f"{channel_id}:{event_id}"


def event_seen(*, channel_id: str, event_id: str) -> bool:
    if not event_id:
        return False
    return _collection().count_documents({"_id": _key(channel_id, event_id)}, limit=1) > 0


def event_record(*, channel_id: str, event_id: str) -> None:
    if not event_id:
        return
    try:
        _collection().insert_one({"_id": _key(channel_id, event_id), "expires_at": timezone.now() + KEEP})
    except DuplicateKeyError:
        pass  # the same event handled twice at once: the ingest kept one message
