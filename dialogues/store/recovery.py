"""Work made due again: parked dialogues whose channel is back, customer messages whose reply
is owed while nobody is about to work on them (orphans), and the operators' "deliver now" and
"redeliver now".
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bson import ObjectId
from django.utils import timezone
from pymongo import UpdateOne

from channels_app.breaker import breakers_probe_now
from channels_app.models import DeliveryState
from core.datetimes import aware
from core.errors import Conflict
from dialogues.models import Message
from dialogues.store.claims import claim_free, dialogue_wake
from dialogues.store.collections import (
    EPOCH,
    OWED_STATES,
    RETRYABLE_STATES,
    dialogues_collection,
    messages_collection,
)


def parked_dialogues(*, limit: int = 1000) -> list[dict[str, Any]]:
    return list(dialogues_collection().find({"parked": {"$exists": True}}, {"channel_id": 1}).limit(limit))


def parked_resume(*, channel_ids: list[ObjectId]) -> int:
    """Wakes the parked dialogues of channels that can take replies again."""
    if not channel_ids:
        return 0
    now = timezone.now()
    messages_collection().update_many(
        {"channel_id": {"$in": channel_ids}, "delivery_state": DeliveryState.PARKED.value},
        {"$set": {"delivery_state": DeliveryState.PENDING.value, "next_attempt_at": None}},
    )
    result = dialogues_collection().update_many(
        {"channel_id": {"$in": channel_ids}, "parked": {"$exists": True}},
        {"$set": {"work_due_at": now}, "$unset": {"parked": ""}, "$max": {"claim_until": EPOCH}},
    )
    return int(result.modified_count)


def orphans_wake(*, older_than: timedelta = timedelta(seconds=10), limit: int = 200) -> int:
    """The recovery path: customer messages still awaiting a reply that nobody is about to
    work on (a release raced an insert, a crash left the dialogue's bookkeeping behind). Their
    dialogues are marked due again from their position."""
    cutoff = timezone.now() - older_than
    # On the (reply_state, created_at) index; the retry time is checked here, not in the
    # query, where an `$or` would be a scan (docs/internals.md, "Known quirks").
    docs = (
        messages_collection()
        .find(
            {"reply_state": Message.ReplyState.AWAITING.value, "created_at": {"$lt": cutoff}},
            {"dialogue_id": 1, "seq": 1, "next_attempt_at": 1},
        )
        .limit(limit)
    )
    lowest: dict[ObjectId, int] = {}
    for doc in docs:
        retry_at = doc.get("next_attempt_at")
        if retry_at is not None and aware(retry_at) >= cutoff:
            continue  # waiting for its LLM retry
        seq = int(doc.get("seq") or 0)
        lowest[doc["dialogue_id"]] = min(seq, lowest.get(doc["dialogue_id"], seq))
    if not lowest:
        return 0
    now = timezone.now()
    requests = [
        UpdateOne(
            {"_id": dialogue_id, "parked": {"$exists": False}, **claim_free(now)},
            {"$set": {"work_due_at": now}, "$min": {"done_seq": max(0, seq - 1)}},
        )
        for dialogue_id, seq in lowest.items()
    ]
    return int(dialogues_collection().bulk_write(requests, ordered=False).modified_count)


def due_later_make_now() -> int:
    """`deliver_pending`'s "now": every dialogue waiting for a backoff, and every reply and
    message waiting for its next attempt, becomes due at once, and every open channel breaker
    lets its probe through now."""
    now = timezone.now()
    breakers_probe_now()
    for state in RETRYABLE_STATES:
        # One state at a time, on the (delivery_state, created_at) index: the replies owed are
        # few, and their retry time is checked beside it.
        messages_collection().update_many(
            {"delivery_state": state, "next_attempt_at": {"$gt": now}}, {"$set": {"next_attempt_at": now}}
        )
    messages_collection().update_many(
        {"reply_state": Message.ReplyState.AWAITING.value, "next_attempt_at": {"$gt": now}},
        {"$set": {"next_attempt_at": now}},
    )
    result = dialogues_collection().update_many({"work_due_at": {"$gt": now}}, {"$set": {"work_due_at": now}})
    return int(result.modified_count)


def reply_redeliver_request(*, message: Message) -> int:
    """The admin's "redeliver now": the reply, and every message still owed before it in its
    chat (they go first, in order), get one attempt at once, even while the channel's breaker
    is open; a dead reply is revived for it. Its dialogue is handed to the worker; nothing
    here waits on a channel. Returns how many owed messages precede it in its chat."""
    if message.role != Message.Role.ASSISTANT and not (
        message.role == Message.Role.EMPLOYEE and message.delivery_state
    ):
        raise Conflict("Only replies can be redelivered")
    update: dict[str, Any] = {"$set": {"next_attempt_at": None}}
    match: dict[str, Any] = {"_id": message.pk}
    if message.delivery_state == DeliveryState.DEAD:
        match["delivery_state"] = DeliveryState.DEAD.value
        update["$set"]["delivery_state"] = DeliveryState.PENDING.value
        update["$inc"] = {"delivery_revivals": 1}
    elif message.delivery_state in (DeliveryState.PENDING, DeliveryState.FAILED, DeliveryState.PARKED):
        match["delivery_state"] = {"$in": OWED_STATES}
    elif message.delivery_state == DeliveryState.CANCELLED:
        raise Conflict("This reply was cancelled when an operator took the dialogue over; it is never sent")
    else:
        raise Conflict("This reply has already been delivered")
    if messages_collection().update_one(match, update).matched_count != 1:
        raise Conflict("This reply changed meanwhile; reload the page")
    ahead = 0
    if message.seq:
        # Those before it in its chat are attempted first (replies reach a chat in order), now.
        ahead = int(
            messages_collection()
            .update_many(
                {
                    "dialogue_id": message.dialogue_id,
                    "seq": {"$lt": message.seq},
                    "delivery_state": {"$in": OWED_STATES},
                },
                {"$set": {"next_attempt_at": None}},
            )
            .matched_count
        )
    dialogue_wake(dialogue_id=message.dialogue_id, from_seq=message.seq, force=True)
    return ahead


def channel_owed_due_now(*, channel_id: ObjectId) -> int:
    """The channel is reachable again (a test message went through, or an operator closed its
    breaker): what it is owed is retried now rather than at the end of each backoff."""
    now = timezone.now()
    # On the (channel_id, delivery_state, created_at) index, in that order (the embedded server
    # takes the filter's first field); the retry time is checked beside it.
    messages_collection().update_many(
        {"channel_id": channel_id, "delivery_state": DeliveryState.FAILED.value, "next_attempt_at": {"$gt": now}},
        {"$set": {"next_attempt_at": now}},
    )
    result = dialogues_collection().update_many(
        {"channel_id": channel_id, "work_due_at": {"$gt": now}}, {"$set": {"work_due_at": now}}
    )
    return int(result.modified_count)
