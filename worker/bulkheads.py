"""Bulkheads: what keeps one slow tenant from taking the others' share of a worker (a failing
channel is held back by its breaker, `channels_app.breaker`).

`Slots` bounds, per worker process, the delivery attempts in flight to one channel
(WORKER_CHANNEL_CONCURRENCY) and the LLM calls in flight for one bot
(WORKER_BOT_LLM_CONCURRENCY). A dialogue that finds its slot taken goes back to the queue for a
moment, so no thread sits blocked behind a slow tenant, and the scheduler skips tenants whose
slots are all taken. A channel's slots are "stuck" when all of them have been taken for
CHANNEL_STUCK_S: a channel that answers in milliseconds has all four taken for an instant
whenever a burst of replies reaches it, which says nothing about it; a delivery then waits up
to CHANNEL_SLOT_WAIT_S for a slot rather than going back to the queue. Only a stuck channel
is skipped by the scheduler, and its replies are not generated meanwhile.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from bson import ObjectId
from django.conf import settings

CHANNEL_STUCK_S = 1.0
CHANNEL_SLOT_WAIT_S = 0.5


class Slots:
    def __init__(self, *, channel_limit: int | None = None, bot_llm_limit: int | None = None):
        self.channel_limit = channel_limit or settings.WORKER_CHANNEL_CONCURRENCY
        self.bot_llm_limit = bot_llm_limit or settings.WORKER_BOT_LLM_CONCURRENCY
        self._channels: Counter[ObjectId] = Counter()
        self._bots: Counter[ObjectId] = Counter()
        # Since when all of a channel's slots have been taken (without a break).
        self._channels_full_since: dict[ObjectId, float] = {}
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)

    @contextmanager
    def _slot(
        self,
        counts: Counter[ObjectId],
        key: ObjectId,
        limit: int,
        *,
        wait_s: float = 0.0,
        full_since: dict | None = None,
    ) -> Iterator[bool]:
        """Yields whether one of `key`'s `limit` slots was free, or freed within `wait_s` (and
        holds it if so)."""
        with self._lock:
            deadline = time.monotonic() + wait_s
            while counts[key] >= limit and wait_s > 0 and not self._stuck(key, full_since):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._freed.wait(remaining):
                    break
            acquired = counts[key] < limit
            if acquired:
                counts[key] += 1
                if full_since is not None and counts[key] >= limit:
                    full_since.setdefault(key, time.monotonic())
        try:
            yield acquired
        finally:
            if acquired:
                with self._lock:
                    counts[key] -= 1
                    if full_since is not None:
                        full_since.pop(key, None)
                    if counts[key] <= 0:
                        del counts[key]
                    self._freed.notify_all()

    def _stuck(self, key: ObjectId, full_since: dict | None) -> bool:
        since = full_since.get(key) if full_since is not None else None
        return since is not None and time.monotonic() - since >= CHANNEL_STUCK_S

    def channel(self, channel_id: ObjectId) -> AbstractContextManager[bool]:
        """A delivery slot of this channel: one free, or freed within CHANNEL_SLOT_WAIT_S unless
        the channel is stuck."""
        return self._slot(
            self._channels, channel_id, self.channel_limit, wait_s=CHANNEL_SLOT_WAIT_S,
            full_since=self._channels_full_since,
        )  # fmt: skip

    def bot_llm(self, chat_bot_id: ObjectId) -> AbstractContextManager[bool]:
        """An LLM slot of this bot, if one is free."""
        return self._slot(self._bots, chat_bot_id, self.bot_llm_limit)

    def channel_stuck(self, channel_id: ObjectId) -> bool:
        """All the channel's slots have been taken for CHANNEL_STUCK_S: it is slow to answer."""
        with self._lock:
            return self._stuck(channel_id, self._channels_full_since)

    def saturated_channels(self) -> list[ObjectId]:
        """The stuck channels."""
        with self._lock:
            return [key for key in self._channels_full_since if self._stuck(key, self._channels_full_since)]

    def saturated_bots(self) -> list[ObjectId]:
        with self._lock:
            return [key for key, count in self._bots.items() if count >= self.bot_llm_limit]
