"""Bulkheads: what keeps one slow tenant from taking the others' share of a worker (a failing
channel is held back by its breaker, `channels_app.breaker`).

`Slots` bounds, per worker process, the delivery attempts in flight to one channel
(WORKER_CHANNEL_CONCURRENCY) and the LLM calls in flight for one bot
(WORKER_BOT_LLM_CONCURRENCY). Slots are only ever tried, never waited for: a dialogue that
finds its slot taken goes back to the queue for a moment, so no thread sits blocked behind a
slow tenant, and the scheduler skips tenants whose slots are all taken.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from bson import ObjectId
from django.conf import settings


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
