"""Delivering a dialogue's owed messages: one attempt each, its outcome recorded under the
holder's fence, and a take-over's cancellations (`worker.pipeline` walks the dialogue and
calls these)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from bson import ObjectId
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone
from pymongo.errors import PyMongoError

from channels_app.breaker import breaker_probe_claim, breaker_record, breaker_wait_until
from channels_app.dispatch import channel_send, reply_payload
from channels_app.kinds import kind_get
from channels_app.models import Channel, DeliveryState
from channels_app.services import channel_delivery_note
from core import metrics
from core.datetimes import aware
from core.errors import is_database_outage
from core.tracing import TRACEPARENT_HEADER, TRACESTATE_HEADER, TraceContext, trace_bound, trace_continue
from core.worker_wake import worker_wake
from dialogues.selectors import message_created_at
from dialogues.store.activity import activity_delivery_attempt
from dialogues.store.attention import DEAD_REPLY, dialogue_attention_add
from dialogues.store.claims import DialogueClaim, dialogue_lease
from dialogues.store.handoff import dialogue_handoff_seq
from dialogues.store.messages import reply_find
from dialogues.store.recovery import channel_owed_due_now
from dialogues.store.replies import (
    reply_cancel,
    reply_fence,
    reply_outcome_is,
    reply_record,
    reply_record_over_cancel,
    reply_state_of,
    reply_store,
    user_message_pause,
)
from worker.bulkheads import Slots
from worker.steps import SLOT_RETRY, Step, StepKind, Stop, backoff, wait_stop

logger = logging.getLogger("worker")


def persist[T](write: Callable[[], T]) -> T:
    """Runs a write that must not be lost, retrying through a database outage for as long as
    the lease leaves (the outcome is fenced, so a late write after a lost lease is refused)."""
    deadline = time.monotonic() + dialogue_lease().total_seconds() - 5
    delay = 0.2
    while True:
        try:
            return write()
        except (DatabaseError, PyMongoError) as exc:
            if not is_database_outage(exc) or time.monotonic() + delay > deadline:
                raise
            logger.warning("worker: database unavailable while recording; retrying in %.1f s", delay)
            time.sleep(delay)
            delay = min(2.0, delay * 2)


def trace_headers(trace: TraceContext) -> dict[str, str]:
    headers = {TRACEPARENT_HEADER: trace.traceparent}
    if trace.tracestate:
        headers[TRACESTATE_HEADER] = trace.tracestate
    return headers


def deliver_traced(
    claim: DialogueClaim, *, message: dict[str, Any], channel: Channel, slots: Slots, answers: ObjectId | None = None
) -> bool:
    # A new span per attempt (one call is one attempt), in the trace the message stores.
    trace = trace_continue(message.get("traceparent"), message.get("tracestate"))
    with trace_bound(trace):
        return _deliver(claim, message=message, channel=channel, slots=slots, trace=trace, answers=answers)


def _deliver(
    claim: DialogueClaim,
    *,
    message: dict[str, Any],
    channel: Channel,
    slots: Slots,
    trace: TraceContext,
    answers: ObjectId | None = None,
) -> bool:
    """One attempt to deliver an owed message. Returns, once it is settled (delivered, dead,
    cancelled), whether it was a fresh reply cancelled by a take-over (never sent); raises
    `Stop` when the dialogue must wait.

    `answers`: the message is a reply generated in this pass and not stored yet, answering
    the customer message with that id. It is stored once, with the outcome of its first
    attempt (or as pending when it has to wait before one): a healthy reply costs one
    write. A crash between the POST and that insert leaves the customer message awaiting;
    the next holder generates the reply again under the same id, so the channel sees the
    same idempotency key twice."""
    now = timezone.now()
    next_at = message.get("next_attempt_at")
    if next_at is not None and aware(next_at) > now:
        raise wait_stop(aware(next_at))
    # "Redeliver now": one attempt through an open breaker (no probe to win either).
    forced = 0 < int(message.get("seq") or 0) <= claim.force_seq
    until = breaker_wait_until(channel)
    if until is not None and not forced:
        if aware(until) > now:
            return _store_waiting(claim, reply=message, answers=answers, stop=wait_stop(aware(until)))
        later = breaker_probe_claim(channel)
        if later is not None:
            return _store_waiting(claim, reply=message, answers=answers, stop=wait_stop(later, bounce=True))
    # A stored message is always fenced first, by an update that matches only while it is
    # owed: one cancelled by a take-over (or delivered, or dead) meanwhile is never sent,
    # even by a holder that read it before.
    if answers is None and not reply_fence(reply=message, token=claim.token):
        return False  # delivered, dead or cancelled meanwhile (an operator, an older holder)
    with slots.channel(channel.pk) as acquired:
        if not acquired:
            return _store_waiting(claim, reply=message, answers=answers, stop=wait_stop(now + SLOT_RETRY, bounce=True))
        if answers is not None and taken_over(claim, reply=message):
            # Taken over while this reply was being generated: it is recorded, never sent.
            return _cancel_fresh(claim, reply=message, answers=answers)
        if forced:
            claim.forced = True
        payload = reply_payload(
            message_id=message["message_id"],
            text=message["text"],
            chat_id=claim.chat_id,
            in_reply_to=message.get("in_reply_to"),
        )
        payload["role"] = message["role"]
        if message.get("answers"):
            # A burst's reply (`pipeline._burst`): every customer message it answers.
            payload["answers"] = list(message["answers"])
        done = int(message.get("delivery_attempts") or 0)
        outcome = channel_send(
            channel=channel,
            payload=payload,
            idempotency_key=message["message_id"],
            # Only the trace headers: nothing here may replace the auth or webhook-* headers.
            extra_headers=trace_headers(trace),
            log_context={
                "bot": str(channel.chat_bot_id),
                "channel": str(channel.pk),
                "reply_id": message["message_id"],
                "attempts_before": done,
            },
        )
    now = timezone.now()
    attempts = done + 1
    values: dict[str, Any] = {"last_status_code": outcome.status_code, "last_error": outcome.error[:500]}
    if outcome.ok:
        values.update(delivery_state=DeliveryState.DELIVERED.value, delivered_at=now, next_attempt_at=None)
    else:
        limit = settings.DELIVERY_MAX_ATTEMPTS + int(message.get("delivery_revivals") or 0)
        # A native kind's final answer (Telegram's "blocked by the user") ends it now; the
        # webhook kind retries every failure, as its contract says (docs/channels.md).
        dead = attempts >= limit or (outcome.permanent and kind_get(channel.kind).permanent_is_final)
        values["delivery_state"] = DeliveryState.DEAD.value if dead else DeliveryState.FAILED.value
        values["next_attempt_at"] = (
            None
            if dead
            else now
            + backoff(
                attempts,
                base_s=settings.DELIVERY_RETRY_BASE_S,
                max_s=settings.DELIVERY_RETRY_MAX_S,
                retry_after_s=outcome.retry_after_s,
            )
        )
    metrics.delivery_attempt_observe(outcome=values["delivery_state"])
    cancelled = False
    # The channel has the reply: losing this record to a database blip would send it again.
    if answers is not None:
        message.update(values, delivery_attempts=attempts)
        recorded = persist(lambda: _reply_store_answering(claim, reply=message, answers=answers))
        # Not delivered, and taken over since it was sent: it is not tried again.
        cancelled = recorded and not outcome.ok and taken_over(claim, reply=message)
    else:
        recorded = persist(
            lambda: reply_record(
                reply_id=message["_id"], chat_bot_id=claim.chat_bot_id, token=claim.token, values=values
            )
        )
        if not recorded:
            # A write that timed out may still have landed (a hung database runs it when it
            # wakes up): then the reply carries our outcome and our token.
            recorded = reply_outcome_is(reply_id=message["_id"], token=claim.token, state=values["delivery_state"])
        if not recorded:
            # Cancelled by a take-over while our POST was in flight: what the channel accepted
            # is recorded as delivered; a failed attempt leaves it cancelled, never owed again.
            current = reply_state_of(reply_id=message["_id"]) or {}
            if current.get("claim_token") == claim.token and current.get("delivery_state") == DeliveryState.CANCELLED:
                recorded, cancelled = True, not outcome.ok
                attempt = values if outcome.ok else {k: values[k] for k in ("last_status_code", "last_error")}
                reply_record_over_cancel(reply_id=message["_id"], token=claim.token, values=attempt)
    if breaker_record(channel, ok=outcome.ok):
        # The channel takes replies again: what waited on its breaker goes now, not at the
        # time each dialogue read (a probe in flight holds the breaker for a whole attempt).
        channel_owed_due_now(channel_id=channel.pk)
        worker_wake()
    if cancelled:
        if answers is not None:
            _cancel_stored(claim, reply=message, answers=answers)
            return True
        return False
    if not recorded:
        # A newer holder stored or fenced this reply while we were posting: its outcome stands.
        logger.warning("stale delivery outcome refused", extra={"reply_id": message["message_id"]})
        raise Stop(Step(StepKind.LOST))
    if outcome.ok and message.get("in_reply_to"):
        metrics.ack_to_delivery_observe(
            reply_id=message["message_id"],
            delivered_at=now,
            acked_at_load=lambda: message_created_at(dialogue_id=claim.dialogue_id, message_id=message["in_reply_to"]),
        )
    activity_delivery_attempt(channel_id=channel.pk, ok=outcome.ok, stored_at=message.get("created_at"), when=now)
    channel_delivery_note(channel_id=channel.pk, state=values["delivery_state"], when=now)
    if values["delivery_state"] == DeliveryState.DEAD.value:
        # The inbox: the customer did not get it; a human decides (redeliver, write again).
        dialogue_attention_add(dialogue_id=claim.dialogue_id, reason=DEAD_REPLY, at=now)
    if values["delivery_state"] == DeliveryState.FAILED.value:
        raise wait_stop(values["next_attempt_at"])
    return False


def _reply_store_answering(claim: DialogueClaim, *, reply: dict[str, Any], answers: ObjectId) -> bool:
    """Stores a reply generated in this pass; its customer message is marked replied at the
    end of the pass. False when a reply to that message is stored already: an insert of ours
    that timed out and landed after all, or a holder whose lease had expired."""
    if reply_store(reply=reply):
        claim.replied.append(answers)
        return True
    stored = reply_find(dialogue_id=claim.dialogue_id, in_reply_to=reply["in_reply_to"], user_seq=int(reply["seq"]) - 1)
    if stored is not None and stored.get("_id") == reply["_id"]:
        claim.replied.append(answers)
        return True
    return False


def burst_reply_store(claim: DialogueClaim, *, reply: dict[str, Any], answers: list[ObjectId]) -> bool:
    """Stores a burst's reply as owed before its first attempt (`pipeline._burst` says why);
    `answers`: the customer messages it answers, the one it is next to last. False when the
    dialogue was taken over meanwhile: it is then stored cancelled, never sent."""
    if not persist(lambda: _reply_store_answering(claim, reply=reply, answers=answers[-1])):
        # A holder whose lease had expired stored one first: that one is delivered in its turn.
        raise Stop(Step(StepKind.REREAD))
    if taken_over(claim, reply=reply):
        reply_cancel(reply_id=reply["_id"])
        if answers[-1] in claim.replied:
            claim.replied.remove(answers[-1])
        return False
    return True


def _store_waiting(claim: DialogueClaim, *, reply: dict[str, Any], answers: ObjectId | None, stop: Stop) -> bool:
    """A message that has to wait before its next attempt: raises `stop`. A fresh reply is
    stored as owed first, so that the wait does not cost another LLM call; one taken over
    meanwhile is stored as cancelled instead, and True is returned (`_deliver`'s "cancelled")."""
    if answers is None:
        raise stop
    if not persist(lambda: _reply_store_answering(claim, reply=reply, answers=answers)):
        # A holder whose lease had expired stored one first: that one is delivered in its turn.
        raise Stop(Step(StepKind.REREAD))
    if taken_over(claim, reply=reply):
        _cancel_stored(claim, reply=reply, answers=answers)
        return True
    raise stop


def taken_over(claim: DialogueClaim, *, reply: dict[str, Any]) -> bool:
    """Whether an operator took the dialogue over after the message this reply answers came
    in. Read from the dialogue each time: a take-over may land at any moment of a pass. A
    take-over writes `handoff_seq` before it cancels stored replies, so a reply stored after
    that cancel is seen here (its holder checks after storing it)."""
    claim.handoff_seq = max(claim.handoff_seq, dialogue_handoff_seq(dialogue_id=claim.dialogue_id))
    return int(reply["seq"]) <= claim.handoff_seq


def _cancel_fresh(claim: DialogueClaim, *, reply: dict[str, Any], answers: ObjectId) -> bool:
    """A reply generated for a dialogue taken over meanwhile: stored as cancelled (the
    transcript shows what the bot would have said), never sent."""
    user_message_pause(message_id=answers)
    reply.update(delivery_state=DeliveryState.CANCELLED.value, next_attempt_at=None)
    reply_store(reply=reply)
    return True


def _cancel_stored(claim: DialogueClaim, *, reply: dict[str, Any], answers: ObjectId) -> None:
    """A reply this pass stored as owed, for a dialogue taken over meanwhile."""
    reply_cancel(reply_id=reply["_id"])
    user_message_pause(message_id=answers)
    if answers in claim.replied:
        claim.replied.remove(answers)
