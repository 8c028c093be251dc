"""Raw collection access for the reply pipeline: what the webhook writes and what the worker
claims, reads and records. Every rule two processes could race on rests on a unique index or
a single-document atomic update (MongoDB has no cross-document transactions here):

- one dialogue per (bot, channel, chat_id): the unique index; the first message creates it;
- one copy per (dialogue, message_id): the insert decides, a DuplicateKeyError is a duplicate;
- one reply per customer message: the unique (dialogue, in_reply_to) index on replies;
- one worker per dialogue at a time: a lease (`claim_until`) with a fencing token
  (`claim_token`), taken by one update that matches only while the dialogue is free; the
  dialogue's replies are generated and delivered in order by whoever holds it;

No `find_one_and_update` anywhere: the embedded server runs every findAndModify as a scan of
the whole collection (33 ms at 3,000 dialogues), where `update_one` by `_id` and a `find` on
an index stay index look-ups.
- one recorded outcome per attempt: a reply's outcome is written only where its
  `claim_token` is still the writer's, so a holder whose lease expired cannot overwrite a
  newer holder's outcome.

The worker's fields on the dialogue (`work_due_at`, `claim_until`, `claim_token`, `done_seq`,
`parked`) are not Django model fields; see `dialogues.models.Dialogue`.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from django.conf import settings
from pymongo import UpdateOne
from pymongo.errors import DuplicateKeyError

from channels_app.models import DeliveryState
from core.caching import LookupCache
from core.errors import Conflict
from core.mongo import mongo_collection
from dialogues.models import Dialogue, Message

DUPLICATE_KEY = 11000
WORK_DUE_DELAY = timedelta(milliseconds=5)
# `claim_until` of a dialogue nobody holds: always a date, so that "free" is one range
# condition the embedded server can evaluate next to the due index (with `$or` on a missing
# or null field it scans every dialogue).
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RETRYABLE_STATES = [DeliveryState.PENDING.value, DeliveryState.FAILED.value]
# Delivery states that still owe the channel something (parked ones wait for the channel).
OWED_STATES = [*RETRYABLE_STATES, DeliveryState.PARKED.value]
# What an operator's take-over cancels: every bot reply not delivered (a dead one too, which
# an operator could otherwise redeliver after the take-over).
CANCELLABLE_STATES = [*OWED_STATES, DeliveryState.DEAD.value]


def utcnow() -> datetime:
    return datetime.now(UTC)


def messages_collection() -> Any:
    return mongo_collection(Message._meta.db_table)


def dialogues_collection() -> Any:
    return mongo_collection(Dialogue._meta.db_table)


def new_claim_token() -> str:
    return secrets.token_hex(8)


# --- The webhook's writes ------------------------------------------------------------------


@dataclass(frozen=True)
class DialogueSlot:
    dialogue_id: ObjectId
    # The first of the positions reserved for the caller (None when none were asked).
    first_seq: int | None


# Dialogue ids by (bot, channel, chat_id), with the last position this process saw. An id
# never changes, so entries may live long: a dialogue deleted since is noticed by the update
# that finds nothing by its id.
_dialogues_seen = LookupCache(maxsize=50_000, ttl_s=lambda: 3600.0)
# Tries of a reservation before giving up; each loses only to another reservation that won.
RESERVE_TRIES = 64


def dialogue_reserve(
    *, chat_bot_id: ObjectId, channel_id: ObjectId, chat_id: str, reserve: int, owes_work: bool
) -> DialogueSlot:
    """The dialogue's id, creating it on the first message, and `reserve` positions for the
    caller's messages, counted in `message_count`, in one single-document atomic update. With
    `owes_work` the dialogue is marked due for the worker in the same update, before the
    message is stored: a worker that looks in between finds a reserved but empty position and
    looks again a moment later.

    The reservation is a compare-and-set on `last_seq` (`update_one` matching the value seen),
    not a `find_one_and_update`: the embedded server runs every findAndModify as a scan of the
    whole collection (33 ms at 3,000 dialogues, growing with their number), while an update by
    `_id` is an index look-up whatever their number. The value seen is this process's last one
    (one round trip while one process serves the dialogue), else read first."""
    collection = dialogues_collection()
    key = _dialogue_key(chat_bot_id=chat_bot_id, channel_id=channel_id, chat_id=chat_id)
    cache_key = (chat_bot_id, channel_id, chat_id)
    now = utcnow()
    update: dict[str, Any] = {
        "$inc": {"last_seq": reserve, "message_count": reserve},
        # `claim_until` exists on every dialogue the worker may claim (see `dialogue_claim`).
        "$max": {"last_message_at": now, "claim_until": EPOCH},
    }
    if owes_work:
        # Due a moment from now, so that the message's insert, which follows this update,
        # has almost always landed when a worker looks.
        update["$set"] = {"work_due_at": now + WORK_DUE_DELAY}

    seen = _dialogues_seen.get(cache_key)
    if seen is None:
        seen = _dialogue_find_or_create(key, now=now)
    dialogue_id, last_seq = seen
    for _ in range(RESERVE_TRIES):
        result = collection.update_one({"_id": dialogue_id, "last_seq": last_seq}, update)
        if result.modified_count == 1:
            _dialogues_seen.set(cache_key, (dialogue_id, last_seq + reserve))
            return DialogueSlot(dialogue_id=dialogue_id, first_seq=last_seq + 1 if reserve else None)
        doc = collection.find_one({"_id": dialogue_id}, {"last_seq": 1})
        if doc is None:
            # Deleted since this process saw it (its bot or channel was deleted): found or
            # created again.
            dialogue_id, last_seq = _dialogue_find_or_create(key, now=now)
        else:
            last_seq = int(doc.get("last_seq") or 0)
    raise RuntimeError("dialogue reservation kept losing races")


def _dialogue_key(*, chat_bot_id: ObjectId, channel_id: ObjectId, chat_id: str) -> dict[str, Any]:
    """The dialogue's natural key, `chat_id` first. The unique index on the three is partial
    (the backend adds `$type` conditions), so the embedded server does not use it for this
    look-up and takes one field's index instead, the first in the filter's order: by the bot,
    that walks every dialogue of the bot (0.45 s at 20,000), by `chat_id` only a handful
    (1 ms). MongoDB plans it the same either way."""
    return {"chat_id": chat_id, "chat_bot_id": chat_bot_id, "channel_id": channel_id}


def dialogue_id_find(*, chat_bot_id: ObjectId, channel_id: ObjectId, chat_id: str) -> ObjectId | None:
    doc = dialogues_collection().find_one(
        _dialogue_key(chat_bot_id=chat_bot_id, channel_id=channel_id, chat_id=chat_id), {"_id": 1}
    )
    return doc["_id"] if doc is not None else None


def _dialogue_find_or_create(key: dict[str, Any], *, now: datetime) -> tuple[ObjectId, int]:
    """The dialogue's id and last position. A first message creates it with nothing reserved
    (two at once: the unique index lets one win). A dialogue other than its channel's own
    (opened through `channel_id`) first takes one of its bot's WEBHOOK_MAX_DIALOGUES_PER_BOT
    places (`dialogue_counter_take`): over the limit, DialogueLimitReached, nothing stored."""
    collection = dialogues_collection()
    counted = key["chat_id"] != str(key["channel_id"])
    for _ in range(3):
        doc = collection.find_one(key, {"_id": 1, "last_seq": 1})
        if doc is not None:
            return doc["_id"], int(doc.get("last_seq") or 0)
        if counted:
            dialogue_counter_take(chat_bot_id=key["chat_bot_id"])
        created = None
        try:
            result = collection.update_one(
                key,
                {
                    "$setOnInsert": {
                        "created_at": now,
                        "last_message_at": now,
                        "last_seq": 0,
                        "message_count": 0,
                        "claim_until": EPOCH,
                    }
                },
                upsert=True,
            )
            created = result.upserted_id
        except DuplicateKeyError:
            pass  # another first message created it; the next pass reads it
        finally:
            if counted and created is None:
                # Lost the race (or the write failed): the place is given back.
                dialogue_counter_give_back(chat_bot_id=key["chat_bot_id"])
        if created is not None:
            return created, 0
    raise RuntimeError("dialogue upsert kept losing races")


# --- Dialogues per bot ------------------------------------------------------------------
# `dialogue_counters`: one document per bot, `{_id: <bot id>, dialogues: n}`, the number of
# its dialogues opened through `channel_id`. Taken with one conditional `$inc` before such a
# dialogue is created, given back when the creation loses the race, so two creations at the
# limit cannot both pass (the `_id` makes the upsert of a full counter fail). Read nowhere on
# the path of a message into an existing dialogue. Deleting a bot leaves its counter behind
# (bot ids are never reused); deleting a channel leaves its dialogues counted:
# `manage.py dialogue_counters_recount` sets every counter to the dialogues that exist.
COUNTERS_COLLECTION = "dialogue_counters"


class DialogueLimitReached(Conflict):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"This bot has reached its limit of {limit} dialogues opened through channel_id; "
            "messages into its existing dialogues are still accepted"
        )


def counters_collection() -> Any:
    return mongo_collection(COUNTERS_COLLECTION)


def dialogue_counter_take(*, chat_bot_id: ObjectId) -> None:
    """Counts one more dialogue for the bot, or raises DialogueLimitReached when it has
    WEBHOOK_MAX_DIALOGUES_PER_BOT already (0: no limit, the count is still kept)."""
    limit = int(settings.WEBHOOK_MAX_DIALOGUES_PER_BOT)
    match: dict[str, Any] = {"_id": chat_bot_id}
    if limit:
        match["dialogues"] = {"$lt": limit}
    try:
        counters_collection().update_one(match, {"$inc": {"dialogues": 1}}, upsert=True)
    except DuplicateKeyError:
        # The bot's counter exists and is not below the limit: the upsert's insert collided.
        raise DialogueLimitReached(limit) from None


def dialogue_counter_give_back(*, chat_bot_id: ObjectId) -> None:
    counters_collection().update_one({"_id": chat_bot_id, "dialogues": {"$gt": 0}}, {"$inc": {"dialogues": -1}})


def dialogue_counters_recount() -> int:
    """Sets every bot's counter to its dialogues opened through `channel_id` that exist, and
    drops the counters of bots without any. Run while the webhook is quiet: a dialogue created
    during the recount may be counted twice or not at all. Returns the number of bots counted."""
    counts: dict[ObjectId, int] = {}
    projection = {"chat_bot_id": 1, "channel_id": 1, "chat_id": 1}
    for doc in dialogues_collection().find({}, projection):
        if doc.get("chat_id") != str(doc.get("channel_id")):
            counts[doc["chat_bot_id"]] = counts.get(doc["chat_bot_id"], 0) + 1
    collection = counters_collection()
    if counts:
        collection.bulk_write(
            [UpdateOne({"_id": bot}, {"$set": {"dialogues": n}}, upsert=True) for bot, n in counts.items()]
        )
    collection.delete_many({"_id": {"$nin": list(counts)}})
    return len(counts)


def dialogue_count_adjust(*, dialogue_id: ObjectId, added: int, voids: list[int] | None = None) -> None:
    """Corrects `message_count` where fewer (or more) messages were stored than reserved.
    `voids`: reserved positions that will stay empty (a duplicate's), so the worker need not
    wait for them to be filled."""
    update: dict[str, Any] = {}
    if added:
        update["$inc"] = {"message_count": added}
        if added > 0:
            update["$max"] = {"last_message_at": utcnow()}
    if voids:
        update["$addToSet"] = {"voids": {"$each": voids}}
    if update:
        dialogues_collection().update_one({"_id": dialogue_id}, update)


def message_insert(doc: dict[str, Any]) -> bool:
    """Stores a new message. False when the dialogue already has this message_id."""
    try:
        messages_collection().insert_one(doc)
    except DuplicateKeyError:
        return False
    return True


def message_find(*, dialogue_id: ObjectId, message_id: str) -> dict[str, Any] | None:
    return messages_collection().find_one(
        {"dialogue_id": dialogue_id, "message_id": {"$eq": message_id, "$type": "string"}}
    )


def reply_find(*, dialogue_id: ObjectId, in_reply_to: str) -> dict[str, Any] | None:
    return messages_collection().find_one(
        {
            "dialogue_id": dialogue_id,
            "role": Message.Role.ASSISTANT.value,
            "in_reply_to": {"$eq": in_reply_to, "$type": "string"},
        },
        {"_id": 1, "message_id": 1, "delivery_state": 1},
    )


# --- The worker's claims ---------------------------------------------------------------------


def _claim_free(now: datetime) -> dict[str, Any]:
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
    # The last position reserved before an operator's latest take-over (`dialogue_take_over`):
    # no bot reply at or before it may be sent any more.
    handoff_seq: int = 0
    # "Redeliver now" (`reply_redeliver_request`): owed messages up to this position get one
    # attempt even while the channel's breaker is open.
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


_CLAIM_PROJECTION = {
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
    now = utcnow()
    query: dict[str, Any] = {"work_due_at": {"$lte": now}, **_claim_free(now)}
    if exclude_channels:
        query["channel_id"] = {"$nin": exclude_channels}
    if exclude_bots:
        query["chat_bot_id"] = {"$nin": exclude_bots}
    return list(dialogues_collection().find(query, _CLAIM_PROJECTION).sort([("work_due_at", 1)]).limit(limit))


def dialogue_claim(doc: dict[str, Any]) -> DialogueClaim | None:
    """Claims a dialogue read by `dialogues_due`: an update by `_id` that only matches while it
    is still free, so of any number of workers on any hosts exactly one gets it. None when
    another worker was first. (Not a findAndModify: the embedded server scans the whole
    collection for those.)"""
    now = utcnow()
    token = new_claim_token()
    result = dialogues_collection().update_one(
        {"_id": doc["_id"], **_claim_free(now)},
        {"$set": {"claim_until": now + dialogue_lease(), "claim_token": token}},
    )
    return _claim_from(doc, token) if result.modified_count == 1 else None


def dialogue_claim_next(
    *, exclude_channels: list[ObjectId] | None = None, exclude_bots: list[ObjectId] | None = None
) -> DialogueClaim | None:
    """The dialogue due longest, claimed (tests and one-off callers; the worker claims in
    batches)."""
    for doc in dialogues_due(limit=8, exclude_channels=exclude_channels, exclude_bots=exclude_bots):
        claim = dialogue_claim(doc)
        if claim is not None:
            return claim
    return None


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
    now = utcnow()
    modified = 0
    # One update per kind of tenant, not an `$or` of both: the embedded server scans the whole
    # collection for a top-level `$or`, where each of these reads the due index.
    for tenant_field, ids in (("channel_id", channel_ids), ("chat_bot_id", bot_ids)):
        if ids:
            result = dialogues_collection().update_many(
                {"work_due_at": {"$lte": until}, tenant_field: {"$in": ids}, **_claim_free(now)},
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
        {"$set": {"claim_until": utcnow() + dialogue_lease()}},
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
        sets["work_due_at"] = utcnow()
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
        "$set": {"work_due_at": when or utcnow()},
        "$unset": {"parked": ""},
        "$max": {"claim_until": EPOCH},
    }
    if from_seq is not None:
        update["$min"] = {"done_seq": max(0, from_seq - 1)}
        if force:
            update["$max"]["force_seq"] = from_seq
    dialogues_collection().update_one({"_id": dialogue_id}, update)


def dialogue_window(*, dialogue_id: ObjectId, from_seq: int, limit: int) -> list[dict[str, Any]]:
    """The dialogue's messages from position `from_seq` on, in order: one bounded range read
    on (dialogue, seq), whatever the dialogue's length."""
    docs = list(
        messages_collection()
        .find({"dialogue_id": dialogue_id, "seq": {"$gte": from_seq}})
        .sort([("seq", 1)])
        .limit(limit)
    )
    return docs


def dialogue_before(*, dialogue_id: ObjectId, before_seq: int, span: int) -> list[dict[str, Any]]:
    """The messages in the `span` positions before `before_seq`, in order (a bounded range
    read, for context that empty positions pushed out of the worker's window)."""
    return list(
        messages_collection()
        .find({"dialogue_id": dialogue_id, "seq": {"$gte": max(0, before_seq - span), "$lt": before_seq}})
        .sort([("seq", 1)])
    )


def reply_store(*, reply: dict[str, Any]) -> bool:
    """Stores a generated reply. False when a reply to that message already exists (a holder
    whose lease expired stored it first). The customer message is marked replied later, for
    the whole pass at once (`users_mark_replied`): until then a reply next to an awaiting
    message is what says it is replied."""
    try:
        messages_collection().insert_one(reply)
    except DuplicateKeyError:
        return False
    return True


def users_mark_replied(*, message_ids: list[ObjectId]) -> None:
    """Marks customer messages whose replies are stored as replied: one write per worker pass,
    not one per reply."""
    if message_ids:
        messages_collection().update_many(
            {"_id": {"$in": message_ids}, "reply_state": Message.ReplyState.AWAITING.value},
            {"$set": {"reply_state": Message.ReplyState.REPLIED.value, "next_attempt_at": None}},
        )


def user_message_retry_later(*, message_id: ObjectId, attempts: int, at: datetime, error: str) -> None:
    messages_collection().update_one(
        {"_id": message_id, "reply_state": Message.ReplyState.AWAITING.value},
        {"$set": {"llm_attempts": attempts, "next_attempt_at": at, "last_error": error[:500]}},
    )


def user_message_give_up(*, message_id: ObjectId, attempts: int, error: str) -> None:
    messages_collection().update_one(
        {"_id": message_id, "reply_state": Message.ReplyState.AWAITING.value},
        {
            "$set": {
                "reply_state": Message.ReplyState.FAILED.value,
                "llm_attempts": attempts,
                "next_attempt_at": None,
                "last_error": error[:500],
            }
        },
    )


def reply_fence(*, reply: dict[str, Any], token: str) -> bool:
    """Makes `token` the only one that may record this reply's next outcome (any older
    holder's record is refused from now on). False when it is no longer owed."""
    result = messages_collection().update_one(
        {"_id": reply["_id"], "delivery_state": {"$in": OWED_STATES}},
        {"$set": {"claim_token": token, "claimed_until": utcnow() + dialogue_lease()}},
    )
    if result.matched_count != 1:
        return False
    reply["claim_token"] = token
    return True


def reply_record(*, reply_id: ObjectId, token: str, values: dict[str, Any]) -> bool:
    """Records one attempt's outcome, only if `token` still fences the reply. False: a newer
    holder owns it, and this outcome is dropped."""
    result = messages_collection().update_one(
        {"_id": reply_id, "claim_token": token, "delivery_state": {"$in": OWED_STATES}},
        {"$set": {**values, "claimed_until": None}, "$inc": {"delivery_attempts": 1}},
    )
    return result.matched_count == 1


def reply_outcome_is(*, reply_id: ObjectId, token: str, state: str) -> bool:
    """Whether the reply carries this outcome under this token (a write that timed out may
    have landed after all)."""
    doc = messages_collection().find_one({"_id": reply_id}, {"claim_token": 1, "delivery_state": 1})
    return doc is not None and doc.get("claim_token") == token and doc.get("delivery_state") == state


def reply_state_of(*, reply_id: ObjectId) -> dict[str, Any] | None:
    return messages_collection().find_one({"_id": reply_id}, {"claim_token": 1, "delivery_state": 1})


def reply_record_over_cancel(*, reply_id: ObjectId, token: str, values: dict[str, Any]) -> bool:
    """A reply cancelled by a take-over while this holder's POST of it was in flight: that
    attempt is recorded. Accepted by the channel, it says delivered (the customer has it),
    never cancelled; refused, it stays cancelled. Only the holder that fenced it may write
    this; nothing else leaves the cancelled state."""
    result = messages_collection().update_one(
        {"_id": reply_id, "claim_token": token, "delivery_state": DeliveryState.CANCELLED.value},
        {"$set": {**values, "claimed_until": None}, "$inc": {"delivery_attempts": 1}},
    )
    return result.matched_count == 1


def reply_cancel(*, reply_id: ObjectId) -> bool:
    """Cancels one bot reply not delivered yet (one single-document atomic update)."""
    result = messages_collection().update_one(
        {"_id": reply_id, "delivery_state": {"$in": CANCELLABLE_STATES}},
        {"$set": {"delivery_state": DeliveryState.CANCELLED.value, "next_attempt_at": None, "claimed_until": None}},
    )
    return result.matched_count == 1


def user_message_pause(*, message_id: ObjectId) -> bool:
    """A customer message still awaiting its reply when an operator took the dialogue over:
    it gets none (as if it had come in while the bot was paused). False when it was not
    awaiting (any more)."""
    result = messages_collection().update_one(
        {"_id": message_id, "reply_state": Message.ReplyState.AWAITING.value},
        {"$set": {"reply_state": Message.ReplyState.PAUSED.value, "next_attempt_at": None}},
    )
    return result.modified_count == 1


def dialogue_handoff_seq(*, dialogue_id: ObjectId) -> int:
    """The last position reserved before the dialogue's latest take-over (0: never)."""
    doc = dialogues_collection().find_one({"_id": dialogue_id}, {"handoff_seq": 1})
    return int((doc or {}).get("handoff_seq") or 0)


def dialogue_force_used(claim: DialogueClaim) -> None:
    """A forced attempt was made: the redeliver request that asked for it is used up (unless a
    newer one came meanwhile, asking further)."""
    dialogues_collection().update_one(
        {"_id": claim.dialogue_id, "force_seq": {"$lte": claim.force_seq}}, {"$unset": {"force_seq": ""}}
    )
    claim.force_seq = 0


def replies_park(*, dialogue_id: ObjectId, reason: str) -> None:
    messages_collection().update_many(
        {"dialogue_id": dialogue_id, "delivery_state": {"$in": RETRYABLE_STATES}},
        {"$set": {"delivery_state": DeliveryState.PARKED.value, "last_error": reason[:500], "next_attempt_at": None}},
    )


def parked_dialogues(*, limit: int = 1000) -> list[dict[str, Any]]:
    return list(dialogues_collection().find({"parked": {"$exists": True}}, {"channel_id": 1}).limit(limit))


def parked_resume(*, channel_ids: list[ObjectId]) -> int:
    """Wakes the parked dialogues of channels that can take replies again."""
    if not channel_ids:
        return 0
    now = utcnow()
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
    cutoff = utcnow() - older_than
    # On the (reply_state, created_at) index; the retry time is checked here, not in the
    # query: an `$or` there makes the embedded server scan every message (98 ms at 5,000).
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
        if retry_at is not None and retry_at.replace(tzinfo=UTC) >= cutoff:
            continue  # waiting for its LLM retry
        seq = int(doc.get("seq") or 0)
        lowest[doc["dialogue_id"]] = min(seq, lowest.get(doc["dialogue_id"], seq))
    if not lowest:
        return 0
    now = utcnow()
    requests = [
        UpdateOne(
            {"_id": dialogue_id, "parked": {"$exists": False}, **_claim_free(now)},
            {"$set": {"work_due_at": now}, "$min": {"done_seq": max(0, seq - 1)}},
        )
        for dialogue_id, seq in lowest.items()
    ]
    return int(dialogues_collection().bulk_write(requests, ordered=False).modified_count)


def due_later_make_now() -> int:
    """`deliver_pending`'s "now": every dialogue waiting for a backoff, and every reply and
    message waiting for its next attempt, becomes due at once, and every open channel breaker
    lets its probe through now."""
    now = utcnow()
    mongo_collection("channels_app_channel").update_many(
        {"breaker_open_until": {"$gt": now}}, {"$set": {"breaker_open_until": now}}
    )
    messages_collection().update_many(
        {"delivery_state": {"$in": RETRYABLE_STATES}, "next_attempt_at": {"$gt": now}},
        {"$set": {"next_attempt_at": now}},
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
    from core.errors import Conflict

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
    now = utcnow()
    # Equality on the index's first field and a range on its second (an `$in` there scans).
    messages_collection().update_many(
        {"delivery_state": DeliveryState.FAILED.value, "next_attempt_at": {"$gt": now}, "channel_id": channel_id},
        {"$set": {"next_attempt_at": now}},
    )
    result = dialogues_collection().update_many(
        {"channel_id": channel_id, "work_due_at": {"$gt": now}}, {"$set": {"work_due_at": now}}
    )
    return int(result.modified_count)


# --- Hand-off: the bot paused in a dialogue ---------------------------------------------------
#
# `paused_until` on the dialogue (see `dialogues.models.Dialogue`): the bot answers while it is
# null, missing or past. Whether a customer message gets a reply is decided when it is
# reserved, by the same compare-and-set that hands out its position, so a pause and a message
# arriving at the same moment are ordered by the dialogue's document: the message was either
# reserved before the pause (answered) or after it (stored, never answered).


def _paused_at(now: datetime) -> dict[str, Any]:
    return {"$gt": now}


def _active_at(now: datetime) -> dict[str, Any]:
    # Matches null and missing too (a dialogue never paused). A field condition, not an `$or`.
    return {"$not": {"$gt": now}}


def is_paused(paused_until: datetime | None, *, now: datetime | None = None) -> bool:
    if paused_until is None:
        return False
    when = paused_until if paused_until.tzinfo is not None else paused_until.replace(tzinfo=UTC)
    return when > (now or utcnow())


@dataclass(frozen=True)
class HandoffSlot:
    dialogue_id: ObjectId
    # The first of the positions reserved for the caller (None when none were).
    first_seq: int | None
    # How many positions were reserved.
    reserved: int
    # The bot was paused when the positions were reserved (only for gated reservations).
    paused: bool


def dialogue_reserve_handoff(
    *,
    chat_bot_id: ObjectId,
    channel_id: ObjectId,
    chat_id: str,
    reserve: int,
    owes_work: bool,
    paused_reserve: int | None = None,
    pause_until: datetime | None = None,
) -> HandoffSlot:
    """`dialogue_reserve`, aware of the hand-off, in the same one single-document atomic update
    (one round trip while this process's view of the dialogue is current).

    - `paused_reserve` (customer messages): the reservation depends on whether the bot is
      paused in the dialogue at that instant. Active: `reserve` positions and, with
      `owes_work`, the dialogue due. Paused: `paused_reserve` positions and nothing due. The
      state assumed is part of the compare-and-set's match; when the update finds the other
      state, it reads the dialogue and tries again with that one.
    - `pause_until`: pauses the bot until then in the same update. `$max`, so it never
      shortens a longer pause (an operator's "until resumed" stays so)."""
    collection = dialogues_collection()
    key = _dialogue_key(chat_bot_id=chat_bot_id, channel_id=channel_id, chat_id=chat_id)
    cache_key = (chat_bot_id, channel_id, chat_id)
    gated = paused_reserve is not None
    turn = _RESERVE_TURNS[hash(cache_key) % len(_RESERVE_TURNS)]
    has_turn = turn.acquire(timeout=RESERVE_TURN_WAIT_S)
    try:
        return _reserve_handoff(
            collection,
            key=key,
            cache_key=cache_key,
            gated=gated,
            reserve=reserve,
            owes_work=owes_work,
            paused_reserve=paused_reserve,
            pause_until=pause_until,
        )
    finally:
        if has_turn:
            turn.release()


# The threads of one process that reserve in the same dialogue take turns: each then starts
# from the position the one before it reserved (this process's cache), where otherwise all
# but one would lose the compare-and-set and pay a failed update and a re-read (a quarter of
# the reservations at 16 concurrent clients on 8 dialogues, `make bench`). The wait for a turn
# is bounded, so a hung database never queues the webhook's threads behind one another: past
# it a thread goes ahead without its turn, and the compare-and-set keeps it correct.
_RESERVE_TURNS = tuple(threading.Lock() for _ in range(64))
RESERVE_TURN_WAIT_S = 0.2


def _reserve_handoff(
    collection: Any,
    *,
    key: dict[str, Any],
    cache_key: tuple[ObjectId, ObjectId, str],
    gated: bool,
    reserve: int,
    owes_work: bool,
    paused_reserve: int | None,
    pause_until: datetime | None,
) -> HandoffSlot:
    seen = _dialogues_seen.get(cache_key)
    if seen is None:
        seen = _dialogue_find_or_create(key, now=utcnow())
    dialogue_id, last_seq = seen
    # The common case first: the bot is active.
    paused = False
    for _ in range(RESERVE_TRIES):
        now = utcnow()
        count = paused_reserve if paused and paused_reserve is not None else reserve
        maxes: dict[str, Any] = {"last_message_at": now, "claim_until": EPOCH}
        if pause_until is not None:
            maxes["paused_until"] = pause_until
        update: dict[str, Any] = {"$inc": {"last_seq": count, "message_count": count}, "$max": maxes}
        if owes_work and not paused:
            update["$set"] = {"work_due_at": now + WORK_DUE_DELAY}
        match: dict[str, Any] = {"_id": dialogue_id, "last_seq": last_seq}
        if gated:
            match["paused_until"] = _paused_at(now) if paused else _active_at(now)
        if collection.update_one(match, update).modified_count == 1:
            _dialogues_seen.set(cache_key, (dialogue_id, last_seq + count))
            return HandoffSlot(
                dialogue_id=dialogue_id, first_seq=last_seq + 1 if count else None, reserved=count, paused=paused
            )
        doc = collection.find_one({"_id": dialogue_id}, {"last_seq": 1, "paused_until": 1})
        if doc is None:
            # Deleted since this process saw it: found or created again.
            dialogue_id, last_seq = _dialogue_find_or_create(key, now=utcnow())
            paused = False
        else:
            last_seq = int(doc.get("last_seq") or 0)
            paused = gated and is_paused(doc.get("paused_until"))
    raise RuntimeError("dialogue reservation kept losing races")


def dialogue_reserve_existing(
    *, dialogue_id: ObjectId, reserve: int, owes_work: bool, pause_until: datetime | None = None
) -> HandoffSlot | None:
    """Reserves positions in a dialogue known by its id (an operator's message), never
    creating it: None when it no longer exists. `pause_until` as in
    `dialogue_reserve_handoff`. Read first: operators write rarely, so no cache is kept."""
    collection = dialogues_collection()
    for _ in range(RESERVE_TRIES):
        doc = collection.find_one({"_id": dialogue_id}, {"last_seq": 1})
        if doc is None:
            return None
        last_seq = int(doc.get("last_seq") or 0)
        now = utcnow()
        maxes: dict[str, Any] = {"last_message_at": now, "claim_until": EPOCH}
        if pause_until is not None:
            maxes["paused_until"] = pause_until
        update: dict[str, Any] = {"$inc": {"last_seq": reserve, "message_count": reserve}, "$max": maxes}
        if owes_work:
            update["$set"] = {"work_due_at": now + WORK_DUE_DELAY}
        if collection.update_one({"_id": dialogue_id, "last_seq": last_seq}, update).modified_count == 1:
            return HandoffSlot(
                dialogue_id=dialogue_id, first_seq=last_seq + 1 if reserve else None, reserved=reserve, paused=False
            )
    raise RuntimeError("dialogue reservation kept losing races")


def dialogue_pause_set(*, dialogue_id: ObjectId, until: datetime | None) -> bool:
    """Pauses the bot in the dialogue until `until` exactly (None: resumes it now). False when
    there is no such dialogue."""
    update: dict[str, Any] = {"$set": {"paused_until": until}}
    return dialogues_collection().update_one({"_id": dialogue_id}, update).matched_count == 1


def dialogue_take_over(*, dialogue_id: ObjectId, until: datetime) -> int | None:
    """An operator takes the dialogue over: the bot is paused until `until`, and every position
    reserved so far is marked as before the take-over (`handoff_seq`), in one compare-and-set
    on `last_seq`, so a message reserved at the same moment is on one side of it or the other.
    Then every bot reply at or before that position not yet delivered is cancelled, and the
    dialogue is handed to the worker, which gives the customer messages there still awaiting
    a reply none (`worker.pipeline`: it settles their reply's position too). A worker checks
    `handoff_seq` before it POSTs a reply it generated and after it stores one it could not
    deliver, so what this update cannot see (a reply being generated) is caught there.
    Returns that position; None when there is no such dialogue."""
    collection = dialogues_collection()
    for _ in range(RESERVE_TRIES):
        doc = collection.find_one({"_id": dialogue_id}, {"last_seq": 1})
        if doc is None:
            return None
        last_seq = int(doc.get("last_seq") or 0)
        result = collection.update_one(
            {"_id": dialogue_id, "last_seq": last_seq},
            {"$set": {"paused_until": until}, "$max": {"handoff_seq": last_seq}},
        )
        if result.matched_count == 1:
            break
    else:
        raise RuntimeError("dialogue take-over kept losing races")
    # After `handoff_seq` is written, never before: a worker that stores a reply after this
    # update has run sees that value when it checks.
    messages_collection().update_many(
        {
            "dialogue_id": dialogue_id,
            "seq": {"$lte": last_seq},
            "role": Message.Role.ASSISTANT.value,
            "delivery_state": {"$in": CANCELLABLE_STATES},
        },
        {"$set": {"delivery_state": DeliveryState.CANCELLED.value, "next_attempt_at": None, "claimed_until": None}},
    )
    dialogue_wake(dialogue_id=dialogue_id)
    return last_seq


def dialogue_paused_until(*, dialogue_id: ObjectId) -> datetime | None:
    doc = dialogues_collection().find_one({"_id": dialogue_id}, {"paused_until": 1})
    value = doc.get("paused_until") if doc else None
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value
