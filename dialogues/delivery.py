"""Delivering ASSISTANT replies to their channel, exactly once per reply.

A reply is only ever POSTed by whoever holds its claim: `claimed_until` set by one atomic
`find_one_and_update` whose filter requires the previous claim to be absent or expired. The
webhook inserts a reply already claimed; `deliver_pending` (any number of copies, on any
hosts), a resuming duplicate and the admin's "redeliver" must win the claim first. Each
attempt is recorded with one atomic update, which also releases the claim after the last one.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from django.conf import settings
from django.db import connection
from pymongo import ReturnDocument

from channels_app.dispatch import AttemptResult, channel_post, reply_payload
from channels_app.models import Channel, DeliveryState
from core.errors import Conflict
from dialogues.models import Message

logger = logging.getLogger(__name__)

RETRYABLE_STATES = [DeliveryState.PENDING.value, DeliveryState.FAILED.value]
# deliver_pending --loop spaces retries of one reply: 30 s, 1 min, 2 min, ... up to 1 h.
SCHEDULE_BASE_S = 30.0
SCHEDULE_MAX_S = 3600.0
# The channel's "last delivery" columns are written at most this often per process, unless
# the state changes: on the hot path they would otherwise cost a write per message.
CHANNEL_NOTE_INTERVAL_S = 5.0


def utcnow() -> datetime:
    return datetime.now(UTC)


def messages_collection() -> Any:
    return connection.get_collection(Message._meta.db_table)


def delivery_lease() -> timedelta:
    """Long enough for a whole dispatch (first attempt's full timeouts plus the retry budget),
    so a claim never expires while its holder is still POSTing."""
    return timedelta(
        seconds=settings.CHANNEL_RETRY_BUDGET_S
        + settings.CHANNEL_CONNECT_TIMEOUT_S
        + settings.CHANNEL_READ_TIMEOUT_S
        + 5
    )


def claim_free(now: datetime) -> dict[str, Any]:
    return {"$or": [{"claimed_until": None}, {"claimed_until": {"$lt": now}}]}


def schedule_delay(attempts: int) -> timedelta:
    seconds = min(SCHEDULE_MAX_S, SCHEDULE_BASE_S * (2 ** max(0, attempts - 1)))
    return timedelta(seconds=seconds * random.uniform(0.8, 1.2))  # noqa: S311 - jitter


def reply_claim(*, reply_id: ObjectId, states: list[str] | None = None) -> dict[str, Any] | None:
    """Claims one reply for delivery. None when it is delivered, dead, or someone else holds it."""
    now = utcnow()
    return messages_collection().find_one_and_update(
        {"_id": reply_id, "role": Message.Role.ASSISTANT.value, "delivery_state": {"$in": states or RETRYABLE_STATES},
         **claim_free(now)},
        {"$set": {"claimed_until": now + delivery_lease()}},
        return_document=ReturnDocument.AFTER,
    )  # fmt: skip


def reply_release(*, reply_id: ObjectId) -> None:
    messages_collection().update_one({"_id": reply_id}, {"$set": {"claimed_until": None}})


_channel_notes: dict[str, tuple[str, float]] = {}
_channel_notes_lock = threading.Lock()


def _channel_note(*, channel_id: Any, state: str, when: datetime) -> None:
    key = str(channel_id)
    now = time.monotonic()
    with _channel_notes_lock:
        previous = _channel_notes.get(key)
        if previous and previous[0] == state and now - previous[1] < CHANNEL_NOTE_INTERVAL_S:
            return
        _channel_notes[key] = (state, now)
    connection.get_collection(Channel._meta.db_table).update_one(
        {"_id": channel_id}, {"$set": {"last_delivery_state": state, "last_delivery_at": when}}
    )


@dataclass
class ReplyDelivery:
    state: str
    attempts: int
    status_code: int | None = None
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def reply_deliver(
    *,
    reply: dict[str, Any],
    channel: Channel,
    chat_id: str,
    max_attempts: int | None = None,
    budget_s: float | None = None,
) -> ReplyDelivery:
    """POSTs a reply the caller has claimed, recording every attempt. Returns the final state."""
    done = int(reply.get("delivery_attempts") or 0)
    allowed = max(1, settings.DELIVERY_MAX_ATTEMPTS - done)
    max_attempts = min(max_attempts or (1 + settings.CHANNEL_MAX_RETRIES), allowed)
    reply_id = reply["_id"]
    outcome = ReplyDelivery(state=reply.get("delivery_state") or DeliveryState.PENDING.value, attempts=done)
    collection = messages_collection()

    def record(attempt: AttemptResult) -> None:
        now = utcnow()
        attempts = done + attempt.attempt
        values: dict[str, Any] = {"last_status_code": attempt.status_code, "last_error": attempt.error[:500]}
        if attempt.ok:
            values.update(
                delivery_state=DeliveryState.DELIVERED.value, delivered_at=now, next_attempt_at=None, claimed_until=None
            )
        else:
            dead = attempts >= settings.DELIVERY_MAX_ATTEMPTS
            values["delivery_state"] = DeliveryState.DEAD.value if dead else DeliveryState.FAILED.value
            values["next_attempt_at"] = None if dead else now + schedule_delay(attempts)
            if attempt.final:
                values["claimed_until"] = None
        collection.update_one({"_id": reply_id}, {"$set": values, "$inc": {"delivery_attempts": 1}})
        outcome.state = values["delivery_state"]
        outcome.attempts = attempts
        outcome.status_code = attempt.status_code
        outcome.error = attempt.error
        if attempt.final:
            _channel_note(channel_id=channel.pk, state=outcome.state, when=now)

    channel_post(
        url=channel.settings.url,
        token=channel.settings.token,
        payload=reply_payload(
            message_id=reply["message_id"], text=reply["text"], chat_id=chat_id, in_reply_to=reply.get("in_reply_to")
        ),
        max_attempts=max_attempts,
        budget_s=budget_s,
        on_attempt=record,
        log_context={
            "bot": str(channel.chat_bot_id),
            "channel": str(channel.pk),
            "reply_id": reply["message_id"],
            "attempts_before": done,
        },
    )
    return outcome


def _dialogue_chat_id(dialogue_id: ObjectId) -> str | None:
    doc = connection.get_collection("dialogues_dialogue").find_one({"_id": dialogue_id}, {"chat_id": 1})
    return doc["chat_id"] if doc else None


def reply_redeliver(*, message: Message) -> Message:
    """The admin's "redeliver now" for a pending, failed or dead reply: the same dispatcher
    and recording as the webhook. A dead reply is revived for this one dispatch (if it fails
    again it is dead again). Raises Conflict when the reply is not an undelivered ASSISTANT
    message, someone else is delivering it right now, or its channel is inactive."""
    if message.role != Message.Role.ASSISTANT:
        raise Conflict("Only assistant replies can be redelivered")
    if message.delivery_state == DeliveryState.DELIVERED:
        raise Conflict("This reply has already been delivered")
    channel = Channel.objects.filter(pk=message.channel_id).first()
    if channel is None:
        raise Conflict("The reply's channel no longer exists")
    if not channel.is_active:
        raise Conflict("The reply's channel is inactive")
    states = [*RETRYABLE_STATES, DeliveryState.DEAD.value]
    reply = reply_claim(reply_id=message.pk, states=states)
    if reply is None:
        message.refresh_from_db()
        if message.delivery_state == DeliveryState.DELIVERED:
            raise Conflict("This reply has already been delivered")
        raise Conflict("This reply is being delivered right now; try again shortly")
    chat_id = _dialogue_chat_id(reply["dialogue_id"]) or str(channel.pk)
    # A dead reply gets one more attempt; a live one the webhook's normal retries.
    done = int(reply.get("delivery_attempts") or 0)
    if reply.get("delivery_state") == DeliveryState.DEAD.value or done >= settings.DELIVERY_MAX_ATTEMPTS:
        try:
            _deliver_revived(reply=reply, channel=channel, chat_id=chat_id, done=done)
        finally:
            reply_release(reply_id=message.pk)
    else:
        reply_deliver(reply=reply, channel=channel, chat_id=chat_id)
    message.refresh_from_db()
    return message


def _deliver_revived(*, reply: dict[str, Any], channel: Channel, chat_id: str, done: int) -> None:
    """One attempt for a dead reply; its attempt count keeps growing past the maximum."""
    collection = messages_collection()

    def record(attempt: AttemptResult) -> None:
        now = utcnow()
        values: dict[str, Any] = {
            "last_status_code": attempt.status_code,
            "last_error": attempt.error[:500],
            "claimed_until": None,
            "next_attempt_at": None,
        }
        if attempt.ok:
            values.update(delivery_state=DeliveryState.DELIVERED.value, delivered_at=now)
        else:
            values["delivery_state"] = DeliveryState.DEAD.value
        collection.update_one({"_id": reply["_id"]}, {"$set": values, "$inc": {"delivery_attempts": 1}})
        _channel_note(channel_id=channel.pk, state=values["delivery_state"], when=now)

    channel_post(
        url=channel.settings.url,
        token=channel.settings.token,
        payload=reply_payload(
            message_id=reply["message_id"], text=reply["text"], chat_id=chat_id, in_reply_to=reply.get("in_reply_to")
        ),
        max_attempts=1,
        on_attempt=record,
        log_context={"bot": str(channel.chat_bot_id), "channel": str(channel.pk), "reply_id": reply["message_id"],
                     "attempts_before": done, "revived": True},
    )  # fmt: skip


@dataclass
class PassCounts:
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    skipped: int = 0
    generated: int = 0
    generation_failed: int = 0

    def merge(self, other: PassCounts) -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def count_delivery(self, state: str) -> None:
        if state == DeliveryState.DELIVERED:
            self.delivered += 1
        elif state == DeliveryState.DEAD:
            self.dead += 1
        else:
            self.failed += 1


class BacklogLookups:
    """The channels and chat_ids one pass over a backlog needs, each read once (shared by the
    pass's threads; two threads may both read one on first use, which is harmless)."""

    def __init__(self) -> None:
        self._channels: dict[Any, Channel | None] = {}
        self._chat_ids: dict[Any, str | None] = {}

    def active_channel(self, channel_id: Any) -> Channel | None:
        """The channel, or None when it is gone or inactive (its replies wait until it is
        switched back on)."""
        if channel_id not in self._channels:
            self._channels[channel_id] = Channel.objects.filter(pk=channel_id).first()
        channel = self._channels[channel_id]
        return channel if channel is not None and channel.is_active else None

    def chat_id(self, *, dialogue_id: ObjectId, channel: Channel) -> str:
        if dialogue_id not in self._chat_ids:
            self._chat_ids[dialogue_id] = _dialogue_chat_id(dialogue_id)
        return self._chat_ids[dialogue_id] or str(channel.pk)


def backlog_work[T](items: list[T], work: Callable[[T], PassCounts], *, workers: int = 1) -> PassCounts:
    """`work` on every item of a backlog, `workers` at a time, counts summed. Items are claimed
    inside `work`, so threads (like separate processes) never handle one twice. Threads let
    one pass wait on many slow channels at once instead of one after the other."""
    counts = PassCounts()
    if workers <= 1 or len(items) <= 1:
        for item in items:
            counts.merge(work(item))
        return counts
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="backlog") as pool:
        for done in pool.map(work, items):
            counts.merge(done)
    return counts


def pending_replies_deliver(*, respect_schedule: bool, limit: int = 1000, workers: int = 1) -> PassCounts:
    """One pass over undelivered replies. Without `respect_schedule` (a single manual run)
    every pending or failed reply is tried now, once; with it (the loop) only those whose
    backoff has passed. Replies someone else holds are skipped, not waited for."""
    now = utcnow()
    query: dict[str, Any] = {"delivery_state": {"$in": RETRYABLE_STATES}}
    if respect_schedule:
        query["$or"] = [{"next_attempt_at": None}, {"next_attempt_at": {"$lte": now}}]
    # A snapshot of ids: a reply that fails in this pass is released again, and must not be
    # picked up a second time by the same pass.
    backlog = list(
        messages_collection()
        .find(query, {"_id": 1, "dialogue_id": 1, "channel_id": 1})
        .sort([("next_attempt_at", 1), ("_id", 1)])
        .limit(limit)
    )
    lookups = BacklogLookups()

    def deliver(item: dict[str, Any]) -> PassCounts:
        counts = PassCounts()
        channel = lookups.active_channel(item["channel_id"])
        if channel is None:
            counts.skipped += 1
            return counts
        reply = reply_claim(reply_id=item["_id"])
        if reply is None:
            counts.skipped += 1
            return counts
        chat_id = lookups.chat_id(dialogue_id=item["dialogue_id"], channel=channel)
        result = reply_deliver(reply=reply, channel=channel, chat_id=chat_id, max_attempts=1)
        counts.count_delivery(result.state)
        return counts

    return backlog_work(backlog, deliver, workers=workers)
