"""`webchat_events`: what the open widgets are to be shown (a reply, an operator's message, the
visitor's own message from another tab, typing). The message itself is stored in its dialogue
already; an event only carries it to the stream process (`stream.py`), which polls this
collection and pushes each event to the widgets of its conversation. Events expire after
EVENT_TTL_S: a widget that was away reads the history instead."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from django.utils import timezone
from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from core.mongo import mongo_collection

EVENTS_COLLECTION = "webchat_events"
EVENT_TTL_S = 3600
TTL_INDEX = "webchat_events_ttl"
AT_INDEX = "webchat_events_at"

_indexes_made = False
_indexes_lock = threading.Lock()


def events_indexes(collection: Any) -> None:
    """The TTL index and the stream's index on `at` (creating an existing index is a no-op)."""
    collection.create_index([("at", ASCENDING)], name=AT_INDEX)
    collection.create_index("expires_at", name=TTL_INDEX, expireAfterSeconds=0)


def _collection() -> Any:
    global _indexes_made
    collection = mongo_collection(EVENTS_COLLECTION)
    if not _indexes_made:
        with _indexes_lock:
            if not _indexes_made:
                events_indexes(collection)
                _indexes_made = True
    return collection


def event_insert(*, key: str, channel_id: str, chat_id: str, body: dict[str, Any]) -> bool:
    """Stores one event under `key`; False when it is there already (a retry of the same
    delivery, which must not show twice). Database errors propagate."""
    now = timezone.now()
    document = {
        "_id": key,
        "channel_id": channel_id,
        "chat_id": chat_id,
        **body,
        "at": now,
        "expires_at": now + timedelta(seconds=EVENT_TTL_S),
    }
    try:
        _collection().insert_one(document)
    except DuplicateKeyError:
        return False
    return True


def event_public(document: dict[str, Any]) -> dict[str, Any]:
    """What the widget is sent of an event."""
    if document.get("type") == "typing":
        return {"type": "typing", "state": document.get("state", "off")}
    return {
        "type": "message",
        "id": document.get("message_id", ""),
        "role": document.get("role", ""),
        "text": document.get("text", ""),
    }
