"""Typing events, for channels with `typing_events` on: `on` when the worker starts generating a
reply for a chat, `off` when it decides not to send one after all (the LLM gave up, an operator
took the chat over, the generation was dropped). The pipeline calls `typing_on`, `typing_off`
and `typing_replied`; the POST itself is `channels_app.dispatch.channel_typing_send`.

Best effort, and never in a reply's way:

- The worker's threads only put an event on a bounded queue; TYPING_SENDERS threads of their
  own POST them, one attempt each within min(2 s, CHANNEL_ATTEMPT_TIMEOUT_S). A full queue, or
  an event that waited longer than TYPING_STALE_S, is dropped. Each chat's events go through
  the same sender, so an `off` never overtakes its `on`.
- Never retried, and never a delivery: not counted by the breaker, the delivery metrics, the
  dashboard's activity or the channel's last delivery. A channel whose typing event failed gets
  none for TYPING_FAILURE_PAUSE_S, so that one that hangs does not keep a sender busy.
- Nothing while the channel's breaker is open or its delivery slots are stuck.
- At most one `on` per chat every TYPING_ON_INTERVAL_S, counted in this process. An `off` goes
  only after an `on` that was sent and that nothing has ended since (a reply or an `off`); an
  `on` still queued when its chat is answered is dropped rather than sent after the reply.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Literal

from bson import ObjectId
from cachetools import TTLCache

from channels_app.breaker import breaker_wait_until
from channels_app.dispatch import channel_typing_send
from channels_app.models import Channel
from channels_app.selectors import channel_cached
from core import metrics
from dialogues.store.claims import DialogueClaim
from worker.bulkheads import Slots

logger = logging.getLogger("worker.typing")

TYPING_ON_INTERVAL_S = 5.0
TYPING_STALE_S = 5.0
TYPING_FAILURE_PAUSE_S = 30.0
TYPING_SENDERS = 2
TYPING_QUEUE_SIZE = 256
# How long a chat's typing state is kept: well past any generation, so an `off` finds its `on`.
_CHAT_STATE_TTL_S = 600.0

State = Literal["on", "off"]


@dataclass
class _ChatTyping:
    on_at: float  # time.monotonic() of the last `on` queued
    serial: int  # which `on` that was
    # "queued": an `on` waits for its sender; "sent": it went out and nothing ended it yet;
    # "": nothing is showing (never began, ended by a reply or an `off`).
    phase: str


@dataclass(frozen=True)
class _Event:
    dialogue_id: ObjectId
    channel: Channel
    chat_id: str
    state: State
    serial: int
    queued_at: float
    context: contextvars.Context  # the dialogue's: its log lines keep their trace


# Under `_lock`. Not `core.caching.LookupCache`s: those are emptied whenever look-ups must be
# read afresh, and this is state, not a copy of the database.
_chats: TTLCache[ObjectId, _ChatTyping] = TTLCache(maxsize=100_000, ttl=_CHAT_STATE_TTL_S)
# Channels whose last typing event failed, for TYPING_FAILURE_PAUSE_S.
_paused: TTLCache[ObjectId, bool] = TTLCache(maxsize=10_000, ttl=TYPING_FAILURE_PAUSE_S)
_lock = threading.Lock()


class _Senders:
    """Bounded queues, each drained by one daemon thread, started on first use."""

    def __init__(self, *, count: int, capacity: int) -> None:
        self.queues: list[queue.Queue[_Event]] = [queue.Queue(maxsize=capacity) for _ in range(count)]
        self._started = False
        self._start_lock = threading.Lock()

    def submit(self, event: _Event) -> bool:
        self._start()
        target = self.queues[hash(event.dialogue_id) % len(self.queues)]
        try:
            target.put_nowait(event)
        except queue.Full:
            return False
        return True

    def idle(self) -> bool:
        return all(q.unfinished_tasks == 0 for q in self.queues)

    def _start(self) -> None:
        if self._started:
            return
        with self._start_lock:
            if self._started:
                return
            for number, events in enumerate(self.queues):
                threading.Thread(target=_send_loop, args=(events,), name=f"typing-{number}", daemon=True).start()
            self._started = True


_senders = _Senders(count=TYPING_SENDERS, capacity=TYPING_QUEUE_SIZE)


# --- What the pipeline calls ----------------------------------------------------------------


def typing_on(claim: DialogueClaim, *, slots: Slots | None = None) -> None:
    """The worker starts generating a reply for this chat: `on`, unless one went out for it
    less than TYPING_ON_INTERVAL_S ago. Never raises, never waits on the channel."""
    try:
        _on(claim, slots=slots)
    except Exception:  # noqa: BLE001 - best effort: a typing event never stops a reply
        logger.exception("typing event not sent", extra={"dialogue": str(claim.dialogue_id)})


def typing_off(claim: DialogueClaim, *, slots: Slots | None = None) -> None:
    """No reply will come for now (the LLM gave up, the chat was taken over, the generation was
    dropped and not restarted): `off`, if an `on` went out for this chat and nothing ended it.
    Cheap when there is none (no look-up at all). Never raises, never waits on the channel."""
    try:
        _off(claim, slots=slots)
    except Exception:  # noqa: BLE001 - best effort
        logger.exception("typing event not sent", extra={"dialogue": str(claim.dialogue_id)})


def typing_replied(claim: DialogueClaim) -> None:
    """The reply went to the channel: it ends the `on` (no event; an `on` still queued is
    dropped, rather than shown after the reply)."""
    with _lock:
        chat = _chats.get(claim.dialogue_id)
        if chat is not None and chat.phase:
            chat.phase = ""
            _chats[claim.dialogue_id] = chat


def typing_idle(timeout_s: float = 5.0) -> bool:
    """Whether every queued typing event has been sent or dropped, waiting up to `timeout_s`
    (for tests)."""
    deadline = time.monotonic() + timeout_s
    while not _senders.idle():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


# --- Inside -----------------------------------------------------------------------------------


def _channel_for_typing(claim: DialogueClaim, *, slots: Slots | None) -> Channel | None:
    """The channel, if a typing event may go to it now."""
    channel = channel_cached(claim.channel_id)
    if channel is None or not channel.typing_events or not channel.is_active:
        return None
    with _lock:
        if _paused.get(channel.pk):
            return None
    if slots is not None and slots.channel_stuck(channel.pk):
        return None
    until = breaker_wait_until(channel)
    if until is not None:
        # Open, or its probe due: the probe is a reply's to make, not a typing event's.
        return None
    return channel


def _on(claim: DialogueClaim, *, slots: Slots | None) -> None:
    now = time.monotonic()
    with _lock:
        chat = _chats.get(claim.dialogue_id)
        if chat is not None and now - chat.on_at < TYPING_ON_INTERVAL_S:
            return
    channel = _channel_for_typing(claim, slots=slots)
    if channel is None:
        return
    with _lock:
        chat = _chats.get(claim.dialogue_id)
        if chat is not None and now - chat.on_at < TYPING_ON_INTERVAL_S:
            return  # another holder of this chat got there first
        serial = (chat.serial + 1) if chat is not None else 1
        event = _Event(claim.dialogue_id, channel, claim.chat_id, "on", serial, now, contextvars.copy_context())
        if not _senders.submit(event):
            metrics.typing_event_observe(outcome="dropped")
            return
        _chats[claim.dialogue_id] = _ChatTyping(on_at=now, serial=serial, phase="queued")


def _off(claim: DialogueClaim, *, slots: Slots | None) -> None:
    with _lock:
        chat = _chats.get(claim.dialogue_id)
        if chat is None or not chat.phase:
            return
        sent = chat.phase == "sent"
        # Ended either way: an `on` still queued is dropped by its sender, so nothing is showing.
        chat.phase = ""
        _chats[claim.dialogue_id] = chat
    if not sent:
        return
    channel = _channel_for_typing(claim, slots=slots)
    if channel is None:
        return
    event = _Event(
        claim.dialogue_id, channel, claim.chat_id, "off", chat.serial, time.monotonic(), contextvars.copy_context()
    )
    if not _senders.submit(event):
        metrics.typing_event_observe(outcome="dropped")


def _send_loop(events: queue.Queue[_Event]) -> None:
    while True:
        event = events.get()
        try:
            event.context.run(_send, event)
        except Exception:  # noqa: BLE001 - the sender lives on
            logger.exception("typing event failed unexpectedly")
        finally:
            events.task_done()


def _send(event: _Event) -> None:
    late = time.monotonic() - event.queued_at > TYPING_STALE_S
    with _lock:
        paused = bool(_paused.get(event.channel.pk))
    if late or paused:
        metrics.typing_event_observe(outcome="dropped")
        return
    if event.state == "on":
        with _lock:
            chat = _chats.get(event.dialogue_id)
            if chat is None or chat.serial != event.serial or chat.phase != "queued":
                # Answered, or given up, before it could go: nothing to show any more.
                metrics.typing_event_observe(outcome="dropped")
                return
            chat.phase = "sent"
            _chats[event.dialogue_id] = chat
    outcome = channel_typing_send(
        channel=event.channel,
        chat_id=event.chat_id,
        state=event.state,
        log_context={
            "bot": str(event.channel.chat_bot_id),
            "channel": str(event.channel.pk),
            "dialogue": str(event.dialogue_id),
        },
    )
    if outcome is None:  # the channel's kind has no typing events
        metrics.typing_event_observe(outcome="dropped")
        return
    if outcome.ok:
        metrics.typing_event_observe(outcome="sent")
        return
    metrics.typing_event_observe(outcome="failed")
    with _lock:
        _paused[event.channel.pk] = True
