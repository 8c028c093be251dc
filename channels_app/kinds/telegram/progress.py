"""How much of a split reply Telegram already has, so that a retry sends only the rest.

A reply over 4,096 characters goes out as several `sendMessage` calls. Should one fail after
others were taken, the worker retries the whole reply (same `idempotency_key`): this store says
how many parts were sent, so the customer never gets the first part twice. One small document
per split reply (`_id` = the idempotency key), written after each part Telegram took, removed
by a TTL index once no retry can come any more."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from pymongo.collection import Collection

from core.mongo import mongo_collection

COLLECTION = "channels_telegram_progress"
TTL_INDEX = "created_at_ttl"
# Longer than any reply's retries last (DELIVERY_MAX_ATTEMPTS backoffs of at most
# DELIVERY_RETRY_MAX_S, plus an outage of the worker).
TTL_S = 7 * 24 * 3600

_index_lock = threading.Lock()
_index_made = False


def _collection() -> Collection[dict[str, Any]]:
    global _index_made
    collection = mongo_collection(COLLECTION)
    if not _index_made:
        with _index_lock:
            if not _index_made:
                # Idempotent: creating an index that exists with the same options is a no-op.
                collection.create_index("created_at", name=TTL_INDEX, expireAfterSeconds=TTL_S)
                _index_made = True
    return collection


def parts_sent(idempotency_key: str) -> int:
    doc = _collection().find_one({"_id": idempotency_key}, {"sent": 1})
    return int(doc["sent"]) if doc else 0


def parts_sent_record(idempotency_key: str, *, sent: int, total: int) -> None:
    """`sent` parts are with Telegram. `$max`: a late write from an older attempt never takes a
    count back."""
    _collection().update_one(
        {"_id": idempotency_key},
        {"$max": {"sent": sent}, "$set": {"total": total}, "$setOnInsert": {"created_at": datetime.now(UTC)}},
        upsert=True,
    )
