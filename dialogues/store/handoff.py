"""Hand-off: an operator takes a dialogue over, and the bot is paused in it (`paused_until`,
see `dialogues.models.Dialogue`). Whether a customer message is answered is decided when it
is reserved (`reservation.dialogue_reserve`); a take-over settles what was reserved before it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId
from django.utils import timezone

from channels_app.models import DeliveryState
from core.datetimes import aware
from dialogues.models import PAUSED_INDEFINITELY, Message
from dialogues.store.attention import ASKED, TAKEN_OVER, attention_update
from dialogues.store.claims import dialogue_wake
from dialogues.store.collections import CANCELLABLE_STATES, dialogues_collection, messages_collection
from dialogues.store.reservation import dialogue_compare_and_set


def dialogue_pause_set(*, dialogue_id: ObjectId, until: datetime | None) -> bool:
    """Pauses the bot in the dialogue until `until` exactly (None: resumes it now). False when
    there is no such dialogue."""
    update: dict[str, Any] = {"$set": {"paused_until": until}}
    return dialogues_collection().update_one({"_id": dialogue_id}, update).matched_count == 1


def dialogue_handoff_request(*, dialogue_id: ObjectId, reason: str, at: datetime) -> None:
    """The bot asks for a human: paused until an operator gives the dialogue back, with why.
    Not a take-over: the bot's hand-off text, owed now, is still delivered."""
    update = attention_update(ASKED, at=at)
    update["$set"] = {"paused_until": PAUSED_INDEFINITELY, "handoff_reason": reason[:500], "handoff_requested_at": at}
    dialogues_collection().update_one({"_id": dialogue_id}, update)


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
    won = dialogue_compare_and_set(
        dialogue_id=dialogue_id,
        write=lambda view: (
            {},
            {
                "$set": {"paused_until": until},
                "$max": {"handoff_seq": view["last_seq"]},
                "$min": {"attention_at": timezone.now()},
                "$addToSet": {"attention_reasons": TAKEN_OVER},
            },
            view["last_seq"],
        ),
    )
    if won is None:
        return None
    last_seq = won[1]
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
    return aware(value) if value is not None else None


def dialogue_handoff_seq(*, dialogue_id: ObjectId) -> int:
    """The last position reserved before the dialogue's latest take-over (0: never)."""
    doc = dialogues_collection().find_one({"_id": dialogue_id}, {"handoff_seq": 1})
    return int((doc or {}).get("handoff_seq") or 0)
