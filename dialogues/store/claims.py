"""The worker's claims: one worker per dialogue at a time, by a lease (`claim_until`) with a
fencing token (`claim_token`), taken by one update that matches only while the dialogue is
free. Whoever holds it generates and delivers the dialogue's replies, in order.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from django.conf import settings
from django.utils import timezone
from pymongo import UpdateOne

from core.worker_wake import worker_wake
from dialogues.store.collections import EPOCH, dialogues_collection


def claim_free(now: datetime) -> dict[str, Any]:
    """The match of a dialogue nobody holds."""
    return {"claim_until": {"$lt": now}}


def dialogue_lease() -> timedelta:
    """Outlasts the longest step a holder takes between two renewals: one LLM call (bounded by
    LLM_TIMEOUT_S) and one delivery attempt (bounded by CHANNEL_ATTEMPT_TIMEOUT_S), with room
    for the database writes around them."""
    return timedelta(seconds=settings.LLM_TIMEOUT_S + settings.CHANNEL_ATTEMPT_TIMEOUT_S + 10)


@dataclass
class DialogueClaim:
    dialogue_id: ObjectId
    chat_bot_id: ObjectId
    channel_id: ObjectId
    chat_id: str
    token: str
    last_seq: int
    done_seq: int
    last_message_at: datetime | None
    # Reserved positions known to stay empty (duplicates' reservations, replies never made).
    voids: set[int]
    # Customer messages whose replies this holder found or stored, to be marked replied.
    replied: list[ObjectId] = field(default_factory=list)
    # The last position reserved before an operator's latest take-over
    # (`handoff.dialogue_take_over`): no bot reply at or before it may be sent any more.
    handoff_seq: int = 0
    # "Redeliver now" (`recovery.reply_redeliver_request`): owed messages up to this position
    # get one attempt even while the channel's breaker is open.
    force_seq: int = 0
    # A forced attempt was made in this pass (the request is then used up).
    forced: bool = False


def _claim_from(doc: dict[str, Any], token: str) -> DialogueClaim:
    return DialogueClaim(
        dialogue_id=doc["_id"],
        chat_bot_id=doc["chat_bot_id"],
        channel_id=doc["channel_id"],
        chat_id=doc["chat_id"],
        token=token,
        last_seq=int(doc.get("last_seq") or 0),
        done_seq=int(doc.get("done_seq") or 0),
        last_message_at=doc.get("last_message_at"),
        voids={int(seq) for seq in doc.get("voids") or []},
        handoff_seq=int(doc.get("handoff_seq") or 0),
        force_seq=int(doc.get("force_seq") or 0),
    )


CLAIM_PROJECTION = {
    "chat_bot_id": 1,
    "channel_id": 1,
    "chat_id": 1,
    "last_seq": 1,
    "done_seq": 1,
    "last_message_at": 1,
    "voids": 1,
    "handoff_seq": 1,
    "force_seq": 1,
}


def dialogues_due(
    *, limit: int, exclude_channels: list[ObjectId] | None = None, exclude_bots: list[ObjectId] | None = None
) -> list[dict[str, Any]]:
    """Up to `limit` dialogues due and free, longest due first, skipping the given channels and
    bots (their bulkheads are full): one read on the sparse index of due dialogues."""
    now = timezone.now()
    query: dict[str, Any] = {"work_due_at": {"$lte": now}, **claim_free(now)}
    if exclude_channels:
        query["channel_id"] = {"$nin": exclude_channels}
    if exclude_bots:
        query["chat_bot_id"] = {"$nin": exclude_bots}
    return list(dialogues_collection().find(query, CLAIM_PROJECTION).sort([("work_due_at", 1)]).limit(limit))


def dialogue_claim(doc: dict[str, Any]) -> DialogueClaim | None:
    """Claims a dialogue read by `dialogues_due`: an update by `_id` that only matches while it
    is still free, so of any number of workers on any hosts exactly one gets it. None when
    another worker was first. (Not a findAndModify: docs/internals.md, "Known quirks".)"""
    now = timezone.now()
    token = secrets.token_hex(8)
    result = dialogues_collection().update_one(
        {"_id": doc["_id"], **claim_free(now)},
        {"$set": {"claim_until": now + dialogue_lease(), "claim_token": token}},
    )
    return _claim_from(doc, token) if result.modified_count == 1 else None


def dialogues_claim(docs: list[dict[str, Any]]) -> list[DialogueClaim]:
    """Claims the dialogues read by `dialogues_due` that are still free, in one update for all
    of them (and one read of which were won, when not all were): what one scheduler claims
    costs a round trip or two however many are due, so a claim never waits behind a queue of
    single updates. Each dialogue matches only while it is free, so of any number of workers
    exactly one gets it. One token for the batch: it is unique to this claim of each dialogue
    in it, which is all the fencing needs (every fenced write also names its dialogue or
    message)."""
    if len(docs) <= 1:
        won = dialogue_claim(docs[0]) if docs else None
        return [won] if won is not None else []
    now = timezone.now()
    token = secrets.token_hex(8)
    ids = [doc["_id"] for doc in docs]
    collection = dialogues_collection()
    result = collection.update_many(
        {"_id": {"$in": ids}, **claim_free(now)},
        {"$set": {"claim_until": now + dialogue_lease(), "claim_token": token}},
    )
    if result.modified_count == 0:
        return []
    if result.modified_count == len(docs):
        ours = set(ids)
    else:
        ours = {doc["_id"] for doc in collection.find({"_id": {"$in": ids}, "claim_token": token}, {"_id": 1})}
    return [_claim_from(doc, token) for doc in docs if doc["_id"] in ours]


def dialogues_waiting(*, dialogue_ids: list[ObjectId]) -> list[dict[str, Any]]:
    """Those of these dialogues that still have work due at some time."""
    return list(
        dialogues_collection().find({"_id": {"$in": dialogue_ids}, "work_due_at": {"$exists": True}}, {"_id": 1})
    )


def dialogues_defer(*, channel_ids: list[ObjectId], bot_ids: list[ObjectId], until: datetime) -> int:
    """Moves the due dialogues of tenants whose slots are all taken out of the due range until
    `until`, so that claims do not wade through a blocked tenant's backlog (the due index is
    ordered by time, not by tenant)."""
    if not channel_ids and not bot_ids:
        return 0
    now = timezone.now()
    modified = 0
    # One update per kind of tenant, not an `$or` of both: each reads the due index (docs/internals.md,
    # "Known quirks": a top-level `$or` is a scan there).
    for tenant_field, ids in (("channel_id", channel_ids), ("chat_bot_id", bot_ids)):
        if ids:
            result = dialogues_collection().update_many(
                {"work_due_at": {"$lte": until}, tenant_field: {"$in": ids}, **claim_free(now)},
                {"$set": {"work_due_at": until}},
            )
            modified += int(result.modified_count)
    return modified


def dialogue_renew(claim: DialogueClaim) -> bool:
    """Extends the lease and refreshes what new messages changed. False when the claim was
    lost (it expired and another worker took the dialogue): the caller stops at once."""
    collection = dialogues_collection()
    renewed = collection.update_one(
        {"_id": claim.dialogue_id, "claim_token": claim.token},
        {"$set": {"claim_until": timezone.now() + dialogue_lease()}},
    )
    if renewed.matched_count != 1:
        return False
    doc = collection.find_one(
        {"_id": claim.dialogue_id},
        {"last_seq": 1, "last_message_at": 1, "voids": 1, "handoff_seq": 1, "force_seq": 1},
    )
    if doc is None:
        return False
    claim.last_seq = int(doc.get("last_seq") or 0)
    claim.last_message_at = doc.get("last_message_at")
    claim.voids.update(int(seq) for seq in doc.get("voids") or [])
    claim.handoff_seq = int(doc.get("handoff_seq") or 0)
    claim.force_seq = max(claim.force_seq, int(doc.get("force_seq") or 0))
    return True


def dialogue_leases_extend(claims: list[DialogueClaim]) -> None:
    """Extends the leases of claims still held (their tokens), in one round trip; a claim lost
    meanwhile is left alone (its holder finds out at its next renewal)."""
    if not claims:
        return
    until = timezone.now() + dialogue_lease()
    requests = [
        UpdateOne({"_id": claim.dialogue_id, "claim_token": claim.token}, {"$set": {"claim_until": until}})
        for claim in claims
    ]
    dialogues_collection().bulk_write(requests, ordered=False)


def dialogue_release(
    claim: DialogueClaim, *, done_seq: int, due_at: datetime | None = None, parked: str = "", settled: bool = False
) -> bool:
    """Gives the dialogue back.

    - `due_at`: the head of its queue waits until then (a retry's backoff, an open breaker).
    - `parked`: its channel cannot take anything now; the worker resumes it when it can.
    - `settled`: nothing more is owed up to `claim.last_seq`. Only true if no message was
      reserved since the claim read it, so that condition is part of the update: a False
      return means new work arrived, and the caller goes on with the claim it still holds.
    """
    match: dict[str, Any] = {"_id": claim.dialogue_id, "claim_token": claim.token}
    update: dict[str, Any] = {"$max": {"done_seq": done_seq}}
    if any(seq <= done_seq for seq in claim.voids):
        update["$pull"] = {"voids": {"$lte": done_seq}}
    sets: dict[str, Any] = {"claim_until": EPOCH}
    unset: dict[str, str] = {"claim_token": ""}
    if parked:
        sets["parked"] = parked
        unset["work_due_at"] = ""
    elif due_at is not None:
        sets["work_due_at"] = due_at
        unset["parked"] = ""
    elif settled:
        match["last_seq"] = claim.last_seq
        unset.update(work_due_at="", parked="")
    else:
        sets["work_due_at"] = timezone.now()
    update["$set"] = sets
    update["$unset"] = unset
    return dialogues_collection().update_one(match, update).matched_count == 1


def dialogue_wake(
    *, dialogue_id: ObjectId, when: datetime | None = None, from_seq: int | None = None, force: bool = False
) -> None:
    """Marks a dialogue due (now, or at `when`), e.g. after an operator's "redeliver".
    `from_seq`: a message at that position is owed again, so the worker looks there too.
    `force`: what is owed up to that position gets one attempt even through an open breaker."""
    update: dict[str, Any] = {
        "$set": {"work_due_at": when or timezone.now()},
        "$unset": {"parked": ""},
        "$max": {"claim_until": EPOCH},
    }
    if from_seq is not None:
        update["$min"] = {"done_seq": max(0, from_seq - 1)}
        if force:
            update["$max"]["force_seq"] = from_seq
    dialogues_collection().update_one({"_id": dialogue_id}, update)
    if when is None:
        worker_wake()


def dialogue_force_used(claim: DialogueClaim) -> None:
    """A forced attempt was made: the redeliver request that asked for it is used up (unless a
    newer one came meanwhile, asking further)."""
    dialogues_collection().update_one(
        {"_id": claim.dialogue_id, "force_seq": {"$lte": claim.force_seq}}, {"$unset": {"force_seq": ""}}
    )
    claim.force_seq = 0
