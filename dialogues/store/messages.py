"""Messages stored and read: by their key (a duplicate's original, a message's reply) and by
position in their dialogue (the worker's window)."""

from __future__ import annotations

from typing import Any

from bson import ObjectId
from pymongo.errors import DuplicateKeyError

from dialogues.models import Message
from dialogues.store.collections import messages_collection


def message_insert(doc: dict[str, Any]) -> bool:
    """Stores a new message. False when its key is taken: the dialogue already has this
    message_id, or (for a reply) a reply to that message."""
    try:
        messages_collection().insert_one(doc)
    except DuplicateKeyError:
        return False
    return True


def message_find(*, dialogue_id: ObjectId, message_id: str) -> dict[str, Any] | None:
    """The message by its id in the dialogue, through the index on `message_id`. Plain
    equalities only: on the embedded server a filter led by the dialogue, or any `$type`
    condition, reads every message of the dialogue (docs/internals.md, "Known quirks")."""
    if not isinstance(message_id, str):
        return None
    return messages_collection().find_one({"message_id": message_id, "dialogue_id": dialogue_id})


def reply_find(*, dialogue_id: ObjectId, in_reply_to: str, user_seq: int) -> dict[str, Any] | None:
    """The bot's reply to the customer message at `user_seq`: it is stored at the position
    after it (reserved with the message), so this reads one entry of the (dialogue, seq)
    index however long the dialogue is, and checks the rest here (docs/internals.md, "Known quirks")."""
    doc = messages_collection().find_one(
        {"dialogue_id": dialogue_id, "seq": user_seq + 1},
        {"_id": 1, "message_id": 1, "delivery_state": 1, "role": 1, "in_reply_to": 1},
    )
    if doc is None or doc.get("role") != Message.Role.ASSISTANT or doc.get("in_reply_to") != in_reply_to:
        return None
    return doc


def burst_reply_find(*, dialogue_id: ObjectId, message_id: str, user_seq: int) -> dict[str, Any] | None:
    """The bot reply that answers the customer message at `user_seq` together with the later
    messages of its burst (it lists them in `answers`): a range read on (dialogue, seq) from
    that position, as long as the burst."""
    return messages_collection().find_one(
        {"dialogue_id": dialogue_id, "seq": {"$gt": user_seq}, "answers": message_id},
        {"_id": 1, "message_id": 1, "delivery_state": 1, "role": 1, "in_reply_to": 1},
        sort=[("seq", 1)],
    )


def dialogue_window(*, dialogue_id: ObjectId, from_seq: int, limit: int) -> list[dict[str, Any]]:
    """The dialogue's messages from position `from_seq` on, in order: one bounded range read
    on (dialogue, seq), whatever the dialogue's length."""
    return list(
        messages_collection()
        .find({"dialogue_id": dialogue_id, "seq": {"$gte": from_seq}})
        .sort([("seq", 1)])
        .limit(limit)
    )


def dialogue_before(*, dialogue_id: ObjectId, before_seq: int, span: int) -> list[dict[str, Any]]:
    """The messages in the `span` positions before `before_seq`, in order (a bounded range
    read, for context that empty positions pushed out of the worker's window)."""
    return list(
        messages_collection()
        .find({"dialogue_id": dialogue_id, "seq": {"$gte": max(0, before_seq - span), "$lt": before_seq}})
        .sort([("seq", 1)])
    )
