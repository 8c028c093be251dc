"""Replies and their outcomes. A generated reply is stored once (the unique (dialogue,
in_reply_to) index makes it one reply per customer message); each delivery attempt's outcome
is written only where the reply's `claim_token` is still the writer's (`reply_fence`), so a
holder whose lease expired cannot overwrite a newer holder's outcome. What the LLM did with a
customer message (replied, retry later, given up, paused) is written on that message.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId
from django.utils import timezone

from channels_app.models import DeliveryState
from dialogues.models import Message
from dialogues.store.activity import activity_llm_gave_up
from dialogues.store.claims import dialogue_lease
from dialogues.store.collections import CANCELLABLE_STATES, OWED_STATES, RETRYABLE_STATES, messages_collection
from dialogues.store.messages import message_insert
from dialogues.store.usage import usage_add, usage_of_reply

ERROR_MAX_LENGTH = 500


def reply_store(*, reply: dict[str, Any]) -> bool:
    """Stores a generated reply. False when a reply to that message already exists (a holder
    whose lease expired stored it first). The customer message is marked replied later, for
    the whole pass at once (`users_mark_replied`): until then a reply next to an awaiting
    message is what says it is replied. Counted in the bot's LLM usage when stored."""
    stored = message_insert(reply)
    if stored:
        usage_of_reply(reply)
    return stored


def users_mark_replied(*, message_ids: list[ObjectId]) -> None:
    """Marks customer messages whose replies are stored as replied: one write per worker pass,
    not one per reply."""
    if message_ids:
        messages_collection().update_many(
            {"_id": {"$in": message_ids}, "reply_state": Message.ReplyState.AWAITING.value},
            {"$set": {"reply_state": Message.ReplyState.REPLIED.value, "next_attempt_at": None}},
        )


def _user_message_set(*, message_id: ObjectId, values: dict[str, Any]) -> bool:
    """Writes on a customer message still awaiting its reply. False when it was not awaiting
    (any more)."""
    result = messages_collection().update_one(
        {"_id": message_id, "reply_state": Message.ReplyState.AWAITING.value}, {"$set": values}
    )
    return result.modified_count == 1


def user_message_retry_later(*, message_id: ObjectId, attempts: int, at: datetime, error: str) -> None:
    _user_message_set(
        message_id=message_id,
        values={"llm_attempts": attempts, "next_attempt_at": at, "last_error": error[:ERROR_MAX_LENGTH]},
    )


def user_message_give_up(*, message_id: ObjectId, chat_bot_id: ObjectId, attempts: int, error: str) -> None:
    """The LLM failed for good and there is no fallback text: the message stays unanswered
    (counted as a failure in the bot's LLM usage)."""
    given_up = _user_message_set(
        message_id=message_id,
        values={
            "reply_state": Message.ReplyState.FAILED.value,
            "llm_attempts": attempts,
            "next_attempt_at": None,
            "last_error": error[:ERROR_MAX_LENGTH],
        },
    )
    if given_up:
        now = timezone.now()
        usage_add(chat_bot_id=chat_bot_id, when=now, failures=1)
        activity_llm_gave_up(when=now)


def user_message_pause(*, message_id: ObjectId) -> bool:
    """A customer message still awaiting its reply when an operator took the dialogue over:
    it gets none (as if it had come in while the bot was paused). False when it was not
    awaiting (any more)."""
    return _user_message_set(
        message_id=message_id, values={"reply_state": Message.ReplyState.PAUSED.value, "next_attempt_at": None}
    )


def reply_fence(*, reply: dict[str, Any], token: str) -> bool:
    """Makes `token` the only one that may record this reply's next outcome (any older
    holder's record is refused from now on). False when it is no longer owed."""
    result = messages_collection().update_one(
        {"_id": reply["_id"], "delivery_state": {"$in": OWED_STATES}},
        {"$set": {"claim_token": token, "claimed_until": timezone.now() + dialogue_lease()}},
    )
    if result.matched_count != 1:
        return False
    reply["claim_token"] = token
    return True


def _reply_record_where(*, reply_id: ObjectId, token: str, state: Any, values: dict[str, Any]) -> bool:
    result = messages_collection().update_one(
        {"_id": reply_id, "claim_token": token, "delivery_state": state},
        {"$set": {**values, "claimed_until": None}, "$inc": {"delivery_attempts": 1}},
    )
    return result.matched_count == 1


def reply_record(*, reply_id: ObjectId, chat_bot_id: ObjectId, token: str, values: dict[str, Any]) -> bool:
    """Records one attempt's outcome, only if `token` still fences the reply. False: a newer
    holder owns it, and this outcome is dropped. A reply gone dead counts as a failure in the
    bot's LLM usage."""
    recorded = _reply_record_where(reply_id=reply_id, token=token, state={"$in": OWED_STATES}, values=values)
    if recorded and values.get("delivery_state") == DeliveryState.DEAD.value:
        usage_add(chat_bot_id=chat_bot_id, when=timezone.now(), failures=1)
    return recorded


def reply_record_over_cancel(*, reply_id: ObjectId, token: str, values: dict[str, Any]) -> bool:
    """A reply cancelled by a take-over while this holder's POST of it was in flight: that
    attempt is recorded. Accepted by the channel, it says delivered (the customer has it),
    never cancelled; refused, it stays cancelled. Only the holder that fenced it may write
    this; nothing else leaves the cancelled state."""
    return _reply_record_where(reply_id=reply_id, token=token, state=DeliveryState.CANCELLED.value, values=values)


def reply_state_of(*, reply_id: ObjectId) -> dict[str, Any] | None:
    """The reply's delivery state and the token that fences it."""
    return messages_collection().find_one({"_id": reply_id}, {"claim_token": 1, "delivery_state": 1})


def reply_outcome_is(*, reply_id: ObjectId, token: str, state: str) -> bool:
    """Whether the reply carries this outcome under this token (a write that timed out may
    have landed after all)."""
    doc = reply_state_of(reply_id=reply_id)
    return doc is not None and doc.get("claim_token") == token and doc.get("delivery_state") == state


def reply_cancel(*, reply_id: ObjectId) -> bool:
    """Cancels one bot reply not delivered yet (one single-document atomic update)."""
    result = messages_collection().update_one(
        {"_id": reply_id, "delivery_state": {"$in": CANCELLABLE_STATES}},
        {"$set": {"delivery_state": DeliveryState.CANCELLED.value, "next_attempt_at": None, "claimed_until": None}},
    )
    return result.matched_count == 1


def replies_park(*, dialogue_id: ObjectId, reason: str) -> None:
    """The dialogue's channel cannot take anything now: what it is owed waits for it."""
    messages_collection().update_many(
        {"dialogue_id": dialogue_id, "delivery_state": {"$in": RETRYABLE_STATES}},
        {
            "$set": {
                "delivery_state": DeliveryState.PARKED.value,
                "last_error": reason[:ERROR_MAX_LENGTH],
                "next_attempt_at": None,
            }
        },
    )
