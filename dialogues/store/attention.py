"""The operators' inbox: which dialogues need a human, since when and why, and who handles
them. One owner for these fields of the dialogue document; every write is one atomic update.

- `attention_at`: since when (the earliest reason still open: `$min`), absent when nothing
  needs a human, so the partial index `dialogue_attention` holds only the inbox.
- `attention_reasons`: ATTENTION_REASONS still open (`$addToSet`).
- `assignee_id`/`assignee_name`: the operator handling it (none: unassigned).
- `seen_seq`: the last position the assignee has seen (unread = customer messages after it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId
from django.utils import timezone

from dialogues.store.collections import dialogues_collection

ASKED = "asked"  # the bot asked for a human (a keyword, the model's tool)
TAKEN_OVER = "taken_over"  # an operator took the dialogue over
NO_REPLY = "no_reply"  # a customer message left without a reply (the LLM failed, no fallback)
DEAD_REPLY = "dead_reply"  # a reply or an operator's message that could not be delivered
ATTENTION_REASONS = (ASKED, TAKEN_OVER, NO_REPLY, DEAD_REPLY)


def attention_update(reason: str, *, at: datetime | None = None) -> dict[str, Any]:
    """The update operators that mark a dialogue as needing a human, to merge into another
    update of the same document (or to run alone: `dialogue_attention_add`)."""
    if reason not in ATTENTION_REASONS:
        raise ValueError(f"unknown attention reason {reason!r}")
    return {"$min": {"attention_at": at or timezone.now()}, "$addToSet": {"attention_reasons": reason}}


def dialogue_attention_add(*, dialogue_id: ObjectId, reason: str, at: datetime | None = None) -> None:
    dialogues_collection().update_one({"_id": dialogue_id}, attention_update(reason, at=at))


def dialogue_attention_clear(*, dialogue_id: ObjectId) -> bool:
    """ "Resolve": nothing needs a human any more (the assignee stays, for the record)."""
    result = dialogues_collection().update_one(
        {"_id": dialogue_id},
        {"$unset": {"attention_at": "", "attention_reasons": "", "handoff_reason": "", "handoff_requested_at": ""}},
    )
    return result.matched_count == 1


def dialogue_assign(*, dialogue_id: ObjectId, user_id: Any, username: str) -> bool:
    """Assigns the dialogue to an operator (None: unassigns it)."""
    update: dict[str, Any] = (
        {"$set": {"assignee_id": user_id, "assignee_name": username[:150]}}
        if user_id is not None
        else {"$set": {"assignee_id": None, "assignee_name": ""}}
    )
    return dialogues_collection().update_one({"_id": dialogue_id}, update).matched_count == 1


def dialogue_seen(*, dialogue_id: ObjectId, seq: int) -> None:
    """The assignee has seen the dialogue up to `seq` (never moves back)."""
    dialogues_collection().update_one({"_id": dialogue_id}, {"$max": {"seen_seq": int(seq)}})
