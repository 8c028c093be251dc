"""Positions in a dialogue. Every message takes the next position(s) of its dialogue
(`last_seq`), reserved by one single-document atomic update before it is stored, so the
worker handles a dialogue's messages in order. The reply to a customer message is reserved
with it, in the position right after it.

Whether a customer message gets a reply is decided by the same update, from the bot's pause
in the dialogue (`paused_until`, see `dialogues.models.Dialogue`: the bot answers while it is
null, missing or past), so a pause and a message arriving at the same moment are ordered by
the dialogue's document: the message was either reserved before the pause (answered) or
after it (stored, never answered).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from django.utils import timezone
from pymongo.errors import DuplicateKeyError

from core.caching import LookupCache
from core.datetimes import aware
from dialogues.store.collections import EPOCH, dialogues_collection
from dialogues.store.counters import dialogue_counter_give_back, dialogue_counter_take

WORK_DUE_DELAY = timedelta(milliseconds=5)
# Tries of a compare-and-set before giving up; each loses only to another write that won.
RESERVE_TRIES = 64


def dialogue_compare_and_set[T](
    *,
    write: Callable[[dict[str, Any]], tuple[dict[str, Any], dict[str, Any], T]],
    dialogue_id: ObjectId | None = None,
    seen: dict[str, Any] | None = None,
    projection: tuple[str, ...] = ("last_seq",),
    when_gone: Callable[[], dict[str, Any] | None] | None = None,
) -> tuple[dict[str, Any], T] | None:
    """The compare-and-set on `last_seq` that every write depending on a dialogue's positions
    goes through: `write(view)` gives the update to make while the dialogue still is as
    `view` shows it (its `_id` and `last_seq`, plus the conditions `write` adds to the match)
    and a result for the caller. When another write came first, the dialogue is read again
    (`projection`) and `write` asked again.

    `seen`: the view to try first (one round trip while it is current), else it is read by
    `dialogue_id`. `when_gone`: the view to go on with when the dialogue no longer exists
    (created again); without it, or when it gives None, the result is None.

    Returns the view the update won on and `write`'s result for it. An update by `_id`, not a
    `find_one_and_update` (docs/internals.md, "Known quirks")."""
    collection = dialogues_collection()
    view = seen
    for _ in range(RESERVE_TRIES):
        if view is None:
            view = collection.find_one({"_id": dialogue_id}, dict.fromkeys(projection, 1))
            if view is None and when_gone is not None:
                view = when_gone()
            if view is None:
                return None
        view["last_seq"] = int(view.get("last_seq") or 0)
        match, update, result = write(view)
        # `_id` first: the embedded server serves a filter by its first indexed field (docs/internals.md,
        # "Known quirks"), and `match` may name an indexed field (`paused_until`).
        if collection.update_one({"_id": view["_id"], "last_seq": view["last_seq"], **match}, update).matched_count:
            return view, result
        dialogue_id, view = view["_id"], None
    raise RuntimeError("a dialogue's compare-and-set kept losing races")


def _paused_at(now: datetime) -> dict[str, Any]:
    return {"$gt": now}


def _active_at(now: datetime) -> dict[str, Any]:
    # Matches null and missing too (a dialogue never paused). A field condition, not an `$or`.
    return {"$not": {"$gt": now}}


def is_paused(paused_until: datetime | None, *, now: datetime | None = None) -> bool:
    if paused_until is None:
        return False
    return aware(paused_until) > (now or timezone.now())


@dataclass(frozen=True)
class DialogueSlot:
    dialogue_id: ObjectId
    # The first of the positions reserved for the caller (None when none were).
    first_seq: int | None
    # How many positions were reserved.
    reserved: int
    # The bot was paused when the positions were reserved (only for gated reservations).
    paused: bool


def _reservation(
    view: dict[str, Any],
    *,
    reserve: int,
    owes_work: bool,
    paused_reserve: int | None = None,
    pause_until: datetime | None = None,
) -> tuple[dict[str, Any], dict[str, Any], DialogueSlot]:
    """The update that reserves positions in the dialogue as `view` shows it (see
    `dialogue_reserve`)."""
    now = timezone.now()
    gated = paused_reserve is not None
    paused = gated and is_paused(view.get("paused_until"), now=now)
    count = paused_reserve if paused and paused_reserve is not None else reserve
    # `claim_until` exists on every dialogue the worker may claim (`claims.dialogue_claim`).
    maxes: dict[str, Any] = {"last_message_at": now, "claim_until": EPOCH}
    if pause_until is not None:
        maxes["paused_until"] = pause_until
    update: dict[str, Any] = {"$inc": {"last_seq": count, "message_count": count}, "$max": maxes}
    if owes_work and not paused:
        # Due a moment from now, so that the message's insert, which follows this update,
        # has almost always landed when a worker looks.
        update["$set"] = {"work_due_at": now + WORK_DUE_DELAY}
    match: dict[str, Any] = {}
    if gated:
        match["paused_until"] = _paused_at(now) if paused else _active_at(now)
    slot = DialogueSlot(
        dialogue_id=view["_id"],
        first_seq=view["last_seq"] + 1 if count else None,
        reserved=count,
        paused=paused,
    )
    return match, update, slot


# Dialogue ids by (bot, channel, chat_id), with the last position this process saw. An id
# never changes, so entries may live long: a dialogue deleted since is noticed by the update
# that finds nothing by its id.
_dialogues_seen = LookupCache(maxsize=50_000, ttl_s=lambda: 3600.0)

# The threads of one process that reserve in the same dialogue take turns: each then starts
# from the position the one before it reserved (this process's cache), where otherwise all
# but one would lose the compare-and-set and pay a failed update and a re-read. The wait for
# a turn is bounded, so a hung database never queues the webhook's threads behind one
# another: past it a thread goes ahead without its turn, and the compare-and-set keeps it
# correct.
_RESERVE_TURNS = tuple(threading.Lock() for _ in range(64))
RESERVE_TURN_WAIT_S = 0.2


def dialogue_reserve(
    *,
    chat_bot_id: ObjectId,
    channel_id: ObjectId,
    chat_id: str,
    reserve: int,
    owes_work: bool,
    paused_reserve: int | None = None,
    pause_until: datetime | None = None,
) -> DialogueSlot:
    """The dialogue's id, creating it on the first message, and `reserve` positions for the
    caller's messages, counted in `message_count`, in one single-document atomic update (one
    round trip while this process's view of the dialogue is current). With `owes_work` the
    dialogue is marked due for the worker in the same update, before the message is stored: a
    worker that looks in between finds a reserved but empty position and looks again a moment
    later.

    - `paused_reserve` (customer messages): the reservation depends on whether the bot is
      paused in the dialogue at that instant. Active: `reserve` positions and, with
      `owes_work`, the dialogue due. Paused: `paused_reserve` positions and nothing due. The
      state assumed is part of the compare-and-set's match; when the update finds the other
      state, it reads the dialogue and tries again with that one.
    - `pause_until`: pauses the bot until then in the same update. `$max`, so it never
      shortens a longer pause (an operator's "until resumed" stays so)."""
    key = _dialogue_key(chat_bot_id=chat_bot_id, channel_id=channel_id, chat_id=chat_id)
    cache_key = (chat_bot_id, channel_id, chat_id)
    turn = _RESERVE_TURNS[hash(cache_key) % len(_RESERVE_TURNS)]
    has_turn = turn.acquire(timeout=RESERVE_TURN_WAIT_S)
    try:
        seen = _dialogues_seen.get(cache_key)
        # The common case first: the bot is active (the cached view holds no pause).
        view = {"_id": seen[0], "last_seq": seen[1]} if seen is not None else _dialogue_find_or_create(key)
        won = dialogue_compare_and_set(
            seen=view,
            projection=("last_seq", "paused_until"),
            # Deleted since this process saw it (its bot or channel was deleted): found or
            # created again.
            when_gone=lambda: _dialogue_find_or_create(key),
            write=lambda view: _reservation(
                view, reserve=reserve, owes_work=owes_work, paused_reserve=paused_reserve, pause_until=pause_until
            ),
        )
        assert won is not None  # `when_gone` always gives a dialogue
        view, slot = won
        _dialogues_seen.set(cache_key, (slot.dialogue_id, view["last_seq"] + slot.reserved))
        return slot
    finally:
        if has_turn:
            turn.release()


def dialogue_reserve_existing(
    *, dialogue_id: ObjectId, reserve: int, owes_work: bool, pause_until: datetime | None = None
) -> DialogueSlot | None:
    """Reserves positions in a dialogue known by its id (an operator's message), never
    creating it: None when it no longer exists. `pause_until` as in `dialogue_reserve`. Read
    first: operators write rarely, so no cache is kept."""
    won = dialogue_compare_and_set(
        dialogue_id=dialogue_id,
        write=lambda view: _reservation(view, reserve=reserve, owes_work=owes_work, pause_until=pause_until),
    )
    return won[1] if won is not None else None


def _dialogue_key(*, chat_bot_id: ObjectId, channel_id: ObjectId, chat_id: str) -> dict[str, Any]:
    """The dialogue's natural key, in the order of its unique index `uniq_dialogue_chat`
    (chat_id, chat_bot_id, channel_id; whole, not partial: migration 0011), which serves this
    look-up on the embedded server and on MongoDB alike."""
    return {"chat_id": chat_id, "chat_bot_id": chat_bot_id, "channel_id": channel_id}


def dialogue_id_find(*, chat_bot_id: ObjectId, channel_id: ObjectId, chat_id: str) -> ObjectId | None:
    doc = dialogues_collection().find_one(
        _dialogue_key(chat_bot_id=chat_bot_id, channel_id=channel_id, chat_id=chat_id), {"_id": 1}
    )
    return doc["_id"] if doc is not None else None


def _dialogue_find_or_create(key: dict[str, Any]) -> dict[str, Any]:
    """The dialogue's id and last position (`{_id, last_seq}`). A first message creates it
    with nothing reserved (two at once: the unique index lets one win). A dialogue other than
    its channel's own (opened through `channel_id`) first takes one of its bot's
    WEBHOOK_MAX_DIALOGUES_PER_BOT places (`dialogue_counter_take`): over the limit,
    DialogueLimitReached, nothing stored."""
    collection = dialogues_collection()
    counted = key["chat_id"] != str(key["channel_id"])
    for _ in range(3):
        doc = collection.find_one(key, {"_id": 1, "last_seq": 1})
        if doc is not None:
            return {"_id": doc["_id"], "last_seq": int(doc.get("last_seq") or 0)}
        if counted:
            dialogue_counter_take(chat_bot_id=key["chat_bot_id"])
        created = None
        now = timezone.now()
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
            return {"_id": created, "last_seq": 0}
    raise RuntimeError("dialogue upsert kept losing races")


def dialogue_count_adjust(*, dialogue_id: ObjectId, added: int, voids: list[int] | None = None) -> None:
    """Corrects `message_count` where fewer (or more) messages were stored than reserved.
    `voids`: reserved positions that will stay empty (a duplicate's), so the worker need not
    wait for them to be filled."""
    update: dict[str, Any] = {}
    if added:
        update["$inc"] = {"message_count": added}
        if added > 0:
            update["$max"] = {"last_message_at": timezone.now()}
    if voids:
        update["$addToSet"] = {"voids": {"$each": voids}}
    if update:
        dialogues_collection().update_one({"_id": dialogue_id}, update)


def dialogue_voids_add(*, dialogue_id: ObjectId, voids: list[int]) -> None:
    """Reserved positions that will stay empty after all (the reply places of a burst's
    messages, answered together by one reply), each counted off `message_count` once however
    often a holder that crashed repeats this: the count only moves where the position was not
    known yet, in the same single-document update that records it."""
    if not voids:
        return
    collection = dialogues_collection()
    update = {"$inc": {"message_count": -len(voids)}, "$addToSet": {"voids": {"$each": voids}}}
    if collection.update_one({"_id": dialogue_id, "voids": {"$nin": voids}}, update).matched_count:
        return
    # Some were recorded by an earlier holder of a smaller burst: one position at a time.
    for seq in voids:
        collection.update_one(
            {"_id": dialogue_id, "voids": {"$ne": seq}},
            {"$inc": {"message_count": -1}, "$addToSet": {"voids": seq}},
        )
