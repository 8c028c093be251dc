"""Bulkheads and circuit breakers: what keeps one slow or failing tenant from taking the
others' share of a worker.

- `Slots` bounds, per worker process, the delivery attempts in flight to one channel
  (WORKER_CHANNEL_CONCURRENCY) and the LLM calls in flight for one bot
  (WORKER_BOT_LLM_CONCURRENCY). Slots are only ever tried, never waited for: a dialogue that
  finds its slot taken goes back to the queue for a moment, so no thread sits blocked behind
  a slow tenant, and the scheduler skips tenants whose slots are all taken.
- The breaker lives in the channel's document, shared by every worker on every host: after
  WORKER_BREAKER_THRESHOLD failed attempts in a row nothing is sent to the channel until
  `breaker_open_until`; then one probe (won by an atomic update) decides whether it closes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from django.conf import settings
from pymongo.collection import Collection

from channels_app.models import Channel
from core.caching import LookupCache
from core.mongo import mongo_collection
from dialogues.store.collections import utcnow

logger = logging.getLogger("worker.bulkheads")

BREAKER_COOLDOWN_MAX_S = 600.0
PROBE_WAIT = timedelta(seconds=1)
# The channel's "last delivery" columns are written at most this often per process unless
# the state changes: on the hot path they would otherwise cost a write per reply.
CHANNEL_NOTE_INTERVAL_S = 5.0


class Slots:
    def __init__(self, *, channel_limit: int | None = None, bot_llm_limit: int | None = None):
        self.channel_limit = channel_limit or settings.WORKER_CHANNEL_CONCURRENCY
        self.bot_llm_limit = bot_llm_limit or settings.WORKER_BOT_LLM_CONCURRENCY
        self._channels: Counter[ObjectId] = Counter()
        self._bots: Counter[ObjectId] = Counter()
        self._lock = threading.Lock()

    @contextmanager
    def _slot(self, counts: Counter[ObjectId], key: ObjectId, limit: int) -> Iterator[bool]:
        """Yields whether one of `key`'s `limit` slots was free (and holds it if so)."""
        with self._lock:
            acquired = counts[key] < limit
            if acquired:
                counts[key] += 1
        try:
            yield acquired
        finally:
            if acquired:
                with self._lock:
                    counts[key] -= 1
                    if counts[key] <= 0:
                        del counts[key]

    def channel(self, channel_id: ObjectId) -> AbstractContextManager[bool]:
        """A delivery slot of this channel, if one is free."""
        return self._slot(self._channels, channel_id, self.channel_limit)

    def bot_llm(self, chat_bot_id: ObjectId) -> AbstractContextManager[bool]:
        """An LLM slot of this bot, if one is free."""
        return self._slot(self._bots, chat_bot_id, self.bot_llm_limit)

    def channel_free(self, channel_id: ObjectId) -> bool:
        with self._lock:
            return self._channels[channel_id] < self.channel_limit if channel_id in self._channels else True

    def saturated_channels(self) -> list[ObjectId]:
        with self._lock:
            return [key for key, count in self._channels.items() if count >= self.channel_limit]

    def saturated_bots(self) -> list[ObjectId]:
        with self._lock:
            return [key for key, count in self._bots.items() if count >= self.bot_llm_limit]


def _channels() -> Collection[dict[str, Any]]:
    return mongo_collection(Channel._meta.db_table)


# Breakers this process opened, known before its cached copy of the channel shows them (for
# as long as that copy may be stale).
_opened = LookupCache(maxsize=10_000)


def breaker_wait_until(channel: Channel) -> datetime | None:
    """When the channel's breaker is open, the time its probe is due; None when closed.

    A cached copy of the channel that shows it open is checked against the database: an
    operator may have closed it (or a test message gone through) since the copy was read, and
    waiting on a stale copy would hold the channel's replies until the old reopening time."""
    opened_here = _opened.get(channel.pk)
    if opened_here is not None and opened_here > utcnow():
        return opened_here
    until = channel.breaker_open_until
    if until is None or channel.consecutive_failures < settings.WORKER_BREAKER_THRESHOLD:
        return None
    if _aware(until) <= utcnow():
        return until  # its probe is due: `breaker_probe_claim` reads the database anyway
    current = _channels().find_one({"_id": channel.pk}, {"breaker_open_until": 1, "consecutive_failures": 1}) or {}
    until = current.get("breaker_open_until")
    if until is None or int(current.get("consecutive_failures") or 0) < settings.WORKER_BREAKER_THRESHOLD:
        return None
    return until


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def breaker_closed(channel_id: ObjectId) -> None:
    """The channel is known to take replies again (a test message went through, an operator
    closed its breaker): its breaker is closed and this process forgets it was failing."""
    with _failing_lock:
        _failing.discard(channel_id)
        _opened.discard(channel_id)
    _channels().update_one({"_id": channel_id}, {"$set": {"consecutive_failures": 0, "breaker_open_until": None}})


def breaker_probe_claim(channel: Channel) -> datetime | None:
    """An open breaker whose time is up lets one attempt through, to whoever wins this update.
    None when the caller may send (it won the probe, or the breaker has closed meanwhile);
    otherwise when to look again."""
    now = utcnow()
    hold = now + timedelta(seconds=settings.CHANNEL_ATTEMPT_TIMEOUT_S + 5)
    channels = _channels()
    won = channels.update_one(
        {"_id": channel.pk, "breaker_open_until": {"$lte": now}}, {"$set": {"breaker_open_until": hold}}
    )
    if won.modified_count == 1:
        return None
    current = channels.find_one({"_id": channel.pk}, {"breaker_open_until": 1, "consecutive_failures": 1})
    if current is None or current.get("breaker_open_until") is None:
        return None  # closed by another worker's successful probe
    # Another worker's probe is in flight: look again shortly, not at the end of its hold.
    return now + PROBE_WAIT


_failing: set[ObjectId] = set()
_failing_lock = threading.Lock()


def breaker_record(channel: Channel, *, ok: bool) -> None:
    """Counts a failed attempt (opening the breaker at the threshold, for longer each time it
    reopens) or closes the breaker after a success."""
    if ok:
        with _failing_lock:
            was_failing = channel.pk in _failing
            _failing.discard(channel.pk)
            _opened.discard(channel.pk)
        if was_failing or channel.consecutive_failures or channel.breaker_open_until:
            _channels().update_one(
                {"_id": channel.pk, "consecutive_failures": {"$gt": 0}},
                {"$set": {"consecutive_failures": 0, "breaker_open_until": None}},
            )
        return
    with _failing_lock:
        _failing.add(channel.pk)
    channels = _channels()
    channels.update_one({"_id": channel.pk}, {"$inc": {"consecutive_failures": 1}})
    doc = channels.find_one({"_id": channel.pk}, {"consecutive_failures": 1})
    failures = int((doc or {}).get("consecutive_failures") or 0)
    threshold = settings.WORKER_BREAKER_THRESHOLD
    if failures >= threshold:
        cooldown = min(BREAKER_COOLDOWN_MAX_S, settings.WORKER_BREAKER_COOLDOWN_S * 2 ** min(failures - threshold, 10))
        until = utcnow() + timedelta(seconds=cooldown)
        _channels().update_one({"_id": channel.pk}, {"$set": {"breaker_open_until": until}})
        _opened.set(channel.pk, until)
        logger.warning(
            "channel breaker open",
            extra={"channel": str(channel.pk), "failures": failures, "cooldown_s": round(cooldown, 1)},
        )


_notes: dict[ObjectId, tuple[str, float]] = {}
_notes_lock = threading.Lock()


def channel_note(*, channel_id: ObjectId, state: str, when: datetime) -> None:
    """The channel list's "last delivery" columns."""
    now = time.monotonic()
    with _notes_lock:
        previous = _notes.get(channel_id)
        if previous and previous[0] == state and now - previous[1] < CHANNEL_NOTE_INTERVAL_S:
            return
        _notes[channel_id] = (state, now)
    _channels().update_one({"_id": channel_id}, {"$set": {"last_delivery_state": state, "last_delivery_at": when}})
