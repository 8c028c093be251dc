"""One claimed dialogue, worked through in order: generate each owed reply, deliver each owed
message, until nothing is owed or the head of the queue has to wait.

Order per chat: the dialogue's messages are handled by position, and the holder of the
dialogue's lease is the only one working on it, so replies reach the channel in the order of
the messages they answer. A reply waits while an earlier one is owed (unless that one is
dead). Each step is bounded (LLM_TIMEOUT_S, CHANNEL_ATTEMPT_TIMEOUT_S) and the lease outlasts
one step; it is renewed before the next one.

Tracing (W3C Trace Context, `core.tracing`): a reply is generated in a new span of the trace
its customer message came in with, and stores that span; each delivery attempt is a new span
of the trace the message stores. The LLM call and the POST to the channel carry it as
`traceparent`, and every log line of that work carries its trace id.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Generator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from django.conf import settings
from django.utils import timezone

from channels_app.breaker import breaker_wait_until
from channels_app.models import Channel, DeliveryState
from channels_app.selectors import channel_cached
from chatbots.models import HANDOFF_TEXT_DEFAULT, ChatBot, handoff_keyword_in
from chatbots.selectors import chatbot_cached
from core import metrics
from core.datetimes import aware
from core.tracing import TraceContext, trace_bound, trace_continue
from dialogues.documents import message_document
from dialogues.models import Message
from dialogues.store.attention import NO_REPLY, dialogue_attention_add
from dialogues.store.claims import DialogueClaim, dialogue_force_used, dialogue_release, dialogue_renew
from dialogues.store.handoff import dialogue_handoff_request
from dialogues.store.messages import dialogue_before, dialogue_window, reply_find
from dialogues.store.replies import (
    replies_park,
    user_message_give_up,
    user_message_pause,
    user_message_retry_later,
    users_mark_replied,
)
from dialogues.store.reservation import dialogue_count_adjust, dialogue_voids_add
from llm.client import HistoryItem, LLMError, LLMReply, llm_context_size, llm_reply_generate
from llm.types import history_item
from worker.bulkheads import Slots
from worker.delivery import burst_reply_store, deliver_traced
from worker.steps import SLOT_RETRY, Step, StepKind, Stop, backoff, wait_stop
from worker.typing import typing_off, typing_on, typing_replied

logger = logging.getLogger("worker")

# Positions read beyond the LLM context, for gaps; and owed messages handled per read.
HISTORY_SLACK = 4
BATCH = 16
# A reserved position still empty this long after the dialogue's last reservation is given
# up (its writer died); younger, it may be an insert still on its way, so the worker waits.
UNFILLED_GRACE = timedelta(seconds=2)
UNFILLED_RECHECK = timedelta(milliseconds=20)
LLM_RETRY_BASE_S = 1.0
LLM_RETRY_MAX_S = 300.0
# A reply's id is derived from the message it answers, so that every holder that ever
# generates it (after a crash between a POST and its record) sends the same idempotency key.
REPLY_ID_NAMESPACE = uuid.UUID("5b7c1f0e-3d52-4f4b-9a55-0d6a2b9e8c31")


def reply_message_id(*, dialogue_id: ObjectId, in_reply_to: str) -> str:
    return str(uuid.uuid5(REPLY_ID_NAMESPACE, f"{dialogue_id}/{in_reply_to}"))


@dataclass(frozen=True)
class LLMCall:
    """What a pass asks of the LLM: yielded by `dialogue_steps`, answered by its driver with an
    LLMReply (sent in) or an LLMError (thrown in)."""

    chat_bot: ChatBot | None
    history: list[HistoryItem]
    traceparent: str


# A pass over a dialogue, as a generator: it runs until it needs the LLM, yields the call, and
# goes on with the answer. The worker's driver (`worker.loop`) runs each stretch between two
# calls on a thread of its pool and waits for the LLM on its event loop (`llm.aio`), so a
# dialogue waiting for its answer holds no thread; `dialogue_process` drives it in the caller's
# thread with the synchronous client. Its value is how the pass ended.
DialogueSteps = Generator[LLMCall, LLMReply, Step]


def dialogue_process(claim: DialogueClaim, *, slots: Slots) -> Step:
    """Works through the dialogue and gives it back, calling the LLM in this thread. Returns how
    it ended (for logs and tests)."""
    steps = dialogue_steps(claim, slots=slots)
    answer: LLMReply | None = None
    error: LLMError | None = None
    while True:
        try:
            call = steps.throw(error) if error is not None else steps.send(answer)  # type: ignore[arg-type]
        except StopIteration as done:
            return done.value
        try:
            answer, error = (
                llm_reply_generate(chat_bot=call.chat_bot, history=call.history, traceparent=call.traceparent),
                None,
            )
        except LLMError as exc:
            answer, error = None, exc


def dialogue_steps(claim: DialogueClaim, *, slots: Slots) -> DialogueSteps:
    """Works through the dialogue and gives it back; yields each LLM call (see DialogueSteps)."""
    try:
        step = yield from _work(claim, slots=slots)
    finally:
        users_mark_replied(message_ids=claim.replied)
        claim.replied.clear()
        if claim.forced:
            dialogue_force_used(claim)
    if step.kind is StepKind.LOST:
        logger.warning("dialogue claim lost", extra={"dialogue": str(claim.dialogue_id)})
        # Given back in case it is still ours after all (the release is fenced by the token).
        dialogue_release(claim, done_seq=claim.done_seq, due_at=timezone.now())
        return step
    if step.kind is StepKind.PARK:
        replies_park(dialogue_id=claim.dialogue_id, reason=step.reason)
        dialogue_release(claim, done_seq=claim.done_seq, parked=step.reason)
        return step
    if step.kind is StepKind.WAIT:
        dialogue_release(claim, done_seq=claim.done_seq, due_at=step.until)
    return step


def _work(claim: DialogueClaim, *, slots: Slots) -> DialogueSteps:
    """Passes over the dialogue until nothing is owed or a pass has to stop (`Stop`)."""
    first = True
    while True:
        try:
            if not first and not dialogue_renew(claim):
                raise Stop(Step(StepKind.LOST))
            first = False
            reached_end = yield from _pass(claim, slots=slots)
            if reached_end and dialogue_release(claim, done_seq=claim.done_seq, settled=True):
                return Step(StepKind.SETTLED)
            # The read was full (more messages follow), or a message was reserved since the
            # claim was read: go on with it.
        except Stop as stop:
            if stop.step.kind is not StepKind.REREAD:
                return stop.step


def _pass(claim: DialogueClaim, *, slots: Slots) -> Generator[LLMCall, LLMReply, bool]:
    """One read of the dialogue's owed messages, handled in order. True when it reached the
    end of what is reserved."""
    channel = channel_cached(claim.channel_id)
    if channel is None:
        raise Stop(Step(StepKind.PARK, reason="The channel was deleted"))
    if not channel.is_active:
        raise Stop(Step(StepKind.PARK, reason="The channel is inactive"))
    until = breaker_wait_until(channel)
    settle = claim.force_seq > claim.done_seq or claim.handoff_seq > claim.done_seq
    if until is not None and aware(until) > timezone.now() and not settle:
        # Nothing can reach the channel before then: no reply is generated (or delivered)
        # meanwhile, so a broken channel costs the LLM and the database nothing. Unless an
        # operator asked to redeliver now (`force_seq`: that gets its one attempt), or took
        # the dialogue over (`handoff_seq`: what the bot owed is settled now, unsent).
        raise wait_stop(aware(until))
    if slots.channel_stuck(channel.pk):
        # Everything owed here goes through the channel, which is slow to answer (a reply is
        # not generated before it could be sent): nothing moves before one of its slots
        # frees, so nothing is read.
        raise wait_stop(timezone.now() + SLOT_RETRY, bounce=True)
    bot = chatbot_cached(claim.chat_bot_id)
    context = llm_context_size(bot)
    limit = context + HISTORY_SLACK + BATCH
    window = dialogue_window(
        dialogue_id=claim.dialogue_id, from_seq=max(0, claim.done_seq - context - HISTORY_SLACK), limit=limit
    )
    full = len(window) >= limit
    yield from _walk(claim, window=window, full=full, channel=channel, bot=bot, context=context, slots=slots)
    if full:
        return False  # the read was full: more messages follow
    again = _tail_unfilled(claim)
    if again is not None:
        raise wait_stop(again, bounce=True)
    return True


def _tail_unfilled(claim: DialogueClaim) -> datetime | None:
    """Positions reserved after the last stored message, recently: an insert on its way."""
    if all(seq in claim.voids for seq in range(claim.done_seq + 1, claim.last_seq + 1)):
        return None
    return _unfilledwait_stop(claim)


def _walk(
    claim: DialogueClaim,
    *,
    window: list[dict[str, Any]],
    full: bool,
    channel: Channel,
    bot: ChatBot | None,
    context: int,
    slots: Slots,
) -> Generator[LLMCall, LLMReply, None]:
    """Handles the owed messages of one read, in order, advancing `claim.done_seq` over every
    position it settles. Raises `Stop` where it has to stop."""
    history: list[dict[str, Any]] = [doc for doc in window if (doc.get("seq") or 0) <= claim.done_seq]
    owed = [doc for doc in window if (doc.get("seq") or 0) > claim.done_seq]
    explained = claim.voids  # empty positions known to stay empty
    position = 0
    while position < len(owed):
        doc = owed[position]
        seq = int(doc["seq"])
        _advance(claim)
        # An empty position before this message: given up, or still being written?
        for missing in range(claim.done_seq + 1, seq):
            if missing not in explained:
                until = _unfilledwait_stop(claim)
                if until is not None:
                    raise wait_stop(until, bounce=True)
        role = doc["role"]
        awaiting = role == Message.Role.USER and doc.get("reply_state") == Message.ReplyState.AWAITING
        reply = _reply_covering(owed, doc) if awaiting else None
        if awaiting and reply is None and doc is window[-1] and full:
            # Its reply's position lies beyond this read. A reply stored by a pass whose end
            # was lost (the database hung before the mark and the release) is looked for by
            # its key first, never generated and POSTed a second time. (A read that was not
            # full held every stored position from its start: a reply stored would be in it.)
            reply = reply_find(dialogue_id=claim.dialogue_id, in_reply_to=doc["message_id"], user_seq=seq)
        if awaiting and reply is None and seq > claim.handoff_seq and _bursts(bot):
            # One reply to this message and those that follow it unanswered (`_burst`): stored
            # before it is sent, and inserted in `owed` where it belongs, so the lookup above
            # finds it now for each of them.
            if slots.channel_stuck(channel.pk):
                raise wait_stop(timezone.now() + SLOT_RETRY, bounce=True)
            reply = yield from _burst(
                claim, owed=owed, position=position, history=history, bot=bot, context=context, slots=slots
            )
            awaiting = reply is not None
        if reply is not None and reply.get("delivery_state") == DeliveryState.CANCELLED:
            user_message_pause(message_id=doc["_id"])
            typing_off(claim, slots=slots)  # typing: taken over, no reply after all
        elif reply is not None:
            # Replied already (the mark was still to be written): its reply follows in line.
            claim.replied.append(doc["_id"])
            if reply.get("in_reply_to") != doc["message_id"] and seq + 1 not in claim.voids:
                # Answered with later messages of its burst: its own reply's place stays empty
                # (recorded by `_burst` unless that holder died first).
                dialogue_voids_add(dialogue_id=claim.dialogue_id, voids=[seq + 1])
                claim.voids.add(seq + 1)
        elif awaiting and seq <= claim.handoff_seq:
            # An operator took the dialogue over after this message came in: no reply. Its
            # reply's reserved position stays empty (counted off once, by whoever flips it).
            if user_message_pause(message_id=doc["_id"]):
                dialogue_count_adjust(dialogue_id=claim.dialogue_id, added=-1, voids=[seq + 1])
            explained.add(seq + 1)
            typing_off(claim, slots=slots)  # typing: taken over, no reply after all
        elif awaiting:
            if slots.channel_stuck(channel.pk):
                # Its reply could not be sent now anyway: not generated until it could.
                raise wait_stop(timezone.now() + SLOT_RETRY, bounce=True)
            trace = trace_continue(doc.get("traceparent"), doc.get("tracestate"))
            with trace_bound(trace):
                outcome = yield from _generate(
                    claim, user=doc, history=history, bot=bot, context=context, slots=slots, trace=trace
                )
            if outcome is None:
                # No reply will come (the LLM failed for good): its reply's place stays empty.
                explained.add(seq + 1)
            # The new reply is next in line: sent now, then stored with that outcome. Until it
            # is stored, neither position counts as settled.
            elif deliver_traced(claim, message=outcome, channel=channel, slots=slots, answers=doc["_id"]):
                explained.add(seq + 1)  # cancelled: an operator took the dialogue over
                typing_off(claim, slots=slots)  # typing: taken over, no reply after all
            else:
                typing_replied(claim)  # typing: the reply ends the "on"
                history.append(doc)
                doc, seq = outcome, int(outcome["seq"])
        elif doc.get("delivery_state") in (
            DeliveryState.PENDING,
            DeliveryState.FAILED,
            DeliveryState.PARKED,
        ) and role in (Message.Role.ASSISTANT, Message.Role.EMPLOYEE):
            deliver_traced(claim, message=doc, channel=channel, slots=slots)
            if role == Message.Role.ASSISTANT:
                typing_replied(claim)  # typing: a reply stored before (a burst's, a retry) ends the "on"
        elif role == Message.Role.USER and doc.get("reply_state") == Message.ReplyState.FAILED:
            explained.add(seq + 1)
        history.append(doc)
        claim.done_seq = max(claim.done_seq, seq)
        _advance(claim)
        position += 1


def _reply_covering(owed: list[dict[str, Any]], user: dict[str, Any]) -> dict[str, Any] | None:
    """The bot reply in this read that answers the customer message: next to it, or a burst's
    reply listing it in `answers`."""
    message_id = user["message_id"]
    for doc in owed:
        if doc["role"] == Message.Role.ASSISTANT and (
            doc.get("in_reply_to") == message_id or message_id in (doc.get("answers") or ())
        ):
            return doc
    return None


def _bursts(bot: ChatBot | None) -> bool:
    return bot is not None and bot.reply_policy == ChatBot.ReplyPolicy.BURST


def _burst(
    claim: DialogueClaim,
    *,
    owed: list[dict[str, Any]],
    position: int,
    history: list[dict[str, Any]],
    bot: ChatBot | None,
    context: int,
    slots: Slots,
) -> Generator[LLMCall, LLMReply, dict[str, Any] | None]:
    """The burst reply policy: the customer message at `owed[position]` and those after it
    still unanswered get one reply, once the chat has been quiet for the bot's
    `burst_quiet_ms`, or `burst_max_wait_ms` after the first of them, whichever comes first.

    The reply answers the last of them (`in_reply_to`, hence its id and its reserved place)
    and lists them all in `answers`. A customer message reserved while it was being generated
    drops it, to be made again with that message, unless the longest wait is over. Unlike a
    reply of its own, it is stored as owed before its first attempt: a holder that dies after
    the POST leaves it for the next one to send again under the same id, however the burst
    grew meanwhile. Returns it (inserted in `owed` after the last message it answers), or
    None when the LLM failed for good (the messages are marked so, locally too)."""
    assert bot is not None
    group = _burst_messages(owed, position)
    last = group[-1]
    first_at = aware(group[0]["created_at"])
    quiet = timedelta(milliseconds=bot.burst_quiet_ms)
    longest = first_at + timedelta(milliseconds=bot.burst_max_wait_ms)
    now = timezone.now()
    latest = aware(last["created_at"])
    if claim.last_seq > int(last["seq"]) + 1 and claim.last_message_at is not None:
        latest = max(latest, aware(claim.last_message_at))  # reserved after it, maybe not stored yet
    due = min(latest + quiet, longest)
    if due > now:
        raise wait_stop(due)
    trace = trace_continue(last.get("traceparent"), last.get("tracestate"))
    with trace_bound(trace):
        reply = yield from _generate(
            claim,
            user=last,
            history=[*history, *group[:-1]],
            bot=bot,
            context=context + len(group) - 1,
            slots=slots,
            trace=trace,
            covers=group,
        )
    if reply is None:
        for doc in group:
            doc["reply_state"] = Message.ReplyState.FAILED.value
        return None
    if not dialogue_renew(claim):
        raise Stop(Step(StepKind.LOST))
    if claim.last_seq > int(last["seq"]) + 1 and timezone.now() < longest:
        # The customer wrote again while it was being generated: made again, with that too.
        metrics.burst_generation_dropped()
        logger.info("burst reply dropped for a newer message", extra={"dialogue": str(claim.dialogue_id)})
        raise Stop(Step(StepKind.REREAD))
    if not burst_reply_store(claim, reply=reply, answers=[doc["_id"] for doc in group]):
        reply["delivery_state"] = DeliveryState.CANCELLED.value  # taken over meanwhile: never sent
    dialogue_voids_add(dialogue_id=claim.dialogue_id, voids=[int(doc["seq"]) + 1 for doc in group[:-1]])
    claim.voids.update(int(doc["seq"]) + 1 for doc in group[:-1])
    owed.insert(owed.index(last) + 1, reply)
    return reply


def _burst_messages(owed: list[dict[str, Any]], position: int) -> list[dict[str, Any]]:
    """The customer messages from `position` on that no reply answers yet, up to the first
    message of another kind."""
    group: list[dict[str, Any]] = []
    for doc in owed[position:]:
        if doc["role"] != Message.Role.USER or doc.get("reply_state") != Message.ReplyState.AWAITING:
            break
        if _reply_covering(owed, doc) is not None:
            break
        group.append(doc)
    return group


def _advance(claim: DialogueClaim) -> None:
    """Settled positions include the empty ones known to stay empty right after them."""
    while claim.done_seq + 1 in claim.voids:
        claim.done_seq += 1


def _unfilledwait_stop(claim: DialogueClaim) -> datetime | None:
    """An empty reserved position: while its reservation is recent, look again shortly (the
    insert is most likely a millisecond away); after UNFILLED_GRACE it is given up."""
    if claim.last_message_at is None:
        return None
    now = timezone.now()
    if aware(claim.last_message_at) + UNFILLED_GRACE <= now:
        return None
    return now + UNFILLED_RECHECK


def _history_items(history: list[dict[str, Any]], *, context: int) -> list[HistoryItem]:
    items = [doc for doc in history if doc.get("role") in ("USER", "ASSISTANT", "EMPLOYEE")]
    # With the files each message came with (`attachments`; null on older messages).
    return [
        history_item(role=doc["role"], text=doc["text"], attachments=doc.get("attachments")) for doc in items[-context:]
    ]


def _generate(
    claim: DialogueClaim,
    *,
    user: dict[str, Any],
    history: list[dict[str, Any]],
    bot: ChatBot | None,
    context: int,
    slots: Slots,
    trace: TraceContext,
    covers: list[dict[str, Any]] | None = None,
) -> Generator[LLMCall, LLMReply, dict[str, Any] | None]:
    """The reply to one customer message, not stored yet (`_deliver` stores it with its first
    outcome); None when no reply will ever come. Raises `Stop` when the dialogue must wait.
    `covers`: a burst's messages, `user` last, which the reply answers together."""
    now = timezone.now()
    next_at = user.get("next_attempt_at")
    if next_at is not None and aware(next_at) > now:
        raise wait_stop(aware(next_at))
    known = [*history, user]
    if len(_history_items(known, context=context)) < context:
        # Empty positions (duplicates, replies never made) left the read short: the older
        # messages the context still needs, one more bounded read.
        lowest = min(int(doc.get("seq") or 0) for doc in known)
        if lowest > 1:
            known = [*dialogue_before(dialogue_id=claim.dialogue_id, before_seq=lowest, span=3 * context), *known]
    items = _history_items(known, context=context)
    attempts = int(user.get("llm_attempts") or 0) + 1
    keyword = _handoff_keyword(bot, covers or [user])
    if keyword is not None:
        # The customer asked for a human in words: no LLM call.
        asked = LLMReply(
            text="",
            backend="handoff",
            model="",
            prompt_tokens=None,
            completion_tokens=None,
            latency_ms=0,
            handoff_reason=f"The customer asked for a human: “{keyword}”",
        )
        return _reply_document(claim, user=user, answer=asked, attempts=attempts, trace=trace, covers=covers, bot=bot)
    with slots.bot_llm(claim.chat_bot_id) as acquired:
        if not acquired:
            raise wait_stop(now + SLOT_RETRY, bounce=True)
        typing_on(claim, slots=slots)  # typing: the bot starts writing (best effort, never waits)
        started = time.monotonic()
        try:
            # The LLM call is a span of its own, under the reply's.
            answer: LLMReply | None = yield LLMCall(chat_bot=bot, history=items, traceparent=trace.child().traceparent)
            error: LLMError | None = None
        except LLMError as exc:
            answer, error = None, exc
    metrics.llm_call_observe(started=started, reply=answer, error_retryable=None if error is None else error.retryable)
    if error is not None:
        logger.warning(
            "llm failed",
            extra={
                "dialogue": str(claim.dialogue_id),
                "message_id": user["message_id"],
                "attempt": attempts,
                "error": error.message,
                "retryable": error.retryable,
                "latency_ms": round((time.monotonic() - started) * 1000, 1),
            },
        )
        if error.retryable and attempts < settings.LLM_MAX_ATTEMPTS:
            at = timezone.now() + backoff(
                attempts, base_s=LLM_RETRY_BASE_S, max_s=LLM_RETRY_MAX_S, retry_after_s=error.retry_after_s
            )
            user_message_retry_later(message_id=user["_id"], attempts=attempts, at=at, error=error.message)
            raise wait_stop(at)
        fallback = (bot.fallback_text if bot is not None else "").strip()
        if not fallback:
            given_up = covers or [user]
            for doc in given_up:
                user_message_give_up(
                    message_id=doc["_id"], chat_bot_id=claim.chat_bot_id, attempts=attempts, error=error.message
                )
            # Their replies' places were counted when the messages came in.
            dialogue_count_adjust(dialogue_id=claim.dialogue_id, added=-len(given_up))
            dialogue_attention_add(dialogue_id=claim.dialogue_id, reason=NO_REPLY)  # the inbox: a human answers
            typing_off(claim, slots=slots)  # typing: the LLM gave up, no reply
            return None
        answer = LLMReply(
            text=fallback, backend="fallback", model="", prompt_tokens=None, completion_tokens=None, latency_ms=0
        )
    assert answer is not None
    return _reply_document(claim, user=user, answer=answer, attempts=attempts, trace=trace, covers=covers, bot=bot)


def _handoff_keyword(bot: ChatBot | None, messages: list[dict[str, Any]]) -> str | None:
    if bot is None or not bot.handoff_keywords:
        return None
    for doc in messages:
        found = handoff_keyword_in(bot.handoff_keywords, doc.get("text") or "")
        if found is not None:
            return found
    return None


def _reply_document(
    claim: DialogueClaim,
    *,
    user: dict[str, Any],
    answer: LLMReply,
    attempts: int,
    trace: TraceContext,
    covers: list[dict[str, Any]] | None,
    bot: ChatBot | None,
) -> dict[str, Any]:
    text = answer.text
    if answer.handoff_reason is not None:
        # The bot asks for a human: it says so, and pauses in the dialogue until an operator
        # gives it back (the reply is still delivered: a pause is not a take-over).
        text = ((bot.handoff_text if bot is not None else "") or "").strip() or HANDOFF_TEXT_DEFAULT
        dialogue_handoff_request(dialogue_id=claim.dialogue_id, reason=answer.handoff_reason, at=timezone.now())
        metrics.handoff_requested_observe(source="keyword" if answer.backend == "handoff" else "model")
    reply = message_document(
        dialogue_id=claim.dialogue_id,
        chat_bot_id=claim.chat_bot_id,
        channel_id=claim.channel_id,
        message_id=reply_message_id(dialogue_id=claim.dialogue_id, in_reply_to=user["message_id"]),
        role=Message.Role.ASSISTANT.value,
        text=text,
        created_at=timezone.now(),
        in_reply_to=user["message_id"],
        # The position reserved next to the message it answers.
        seq=int(user["seq"]) + 1,
        delivery_state=DeliveryState.PENDING.value,
        claim_token=claim.token,
        traceparent=trace.traceparent,
        tracestate=trace.tracestate,
        llm={
            "llm_attempts": attempts,
            "llm_backend": answer.backend,
            "llm_model": answer.model,
            "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.completion_tokens,
            "llm_latency_ms": answer.latency_ms,
        },
    )
    if covers is not None:
        # Not a field of Message (the channel's payload carries it; `_reply_covering` reads it).
        reply["answers"] = [doc["message_id"] for doc in covers]
    # Stored with the outcome of its first attempt (`_deliver`): one write, not two.
    reply["_id"] = ObjectId()
    metrics.reply_acked_note(reply_id=reply["message_id"], acked_at=user["created_at"])
    metrics.reply_generated_observe(messages_answered=len(covers or [user]))
    return reply
