"""The pacing's local side: one `Pacer` per worker process, on its LLM event loop (see
llm.pacing)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from core.metrics import LLM_PERMIT_WAIT_SECONDS, LLM_PROVIDER_429, LLM_PROVIDER_CALLS_IN_FLIGHT, LLM_PROVIDER_TOKENS
from llm.pacing.headers import block_seconds
from llm.pacing.limits import BLOCK_MAX_S, BUCKET_FRACTION, COLLECTION, DB_TIMEOUT_MS, STOP_WAIT_S, Limits, Permit
from llm.pacing.state import ProviderState, Waiter
from llm.pacing.sync import PacerSync


class Pacer(PacerSync):
    """One per worker process, created and used on the LLM event loop (see the module's
    docstring)."""

    def __init__(self, *, process_id: str, sync_interval_s: float | None = None) -> None:
        self.process_id = process_id
        if sync_interval_s is None:
            sync_interval_s = settings.LLM_PACING_SYNC_MS / 1000
        self.sync_interval_s = max(0.01, sync_interval_s)
        self._providers: dict[str, ProviderState] = {}
        self._client: AsyncMongoClient[dict[str, Any]] | None = None
        self._collection: Any = None
        self._task: asyncio.Task[None] | None = None
        self._kick: asyncio.Event | None = None
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.database_ok = True

    # --- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        database: dict[str, Any] = settings.DATABASES["default"]
        options: dict[str, Any] = {
            **database.get("OPTIONS", {}),
            "timeoutMS": DB_TIMEOUT_MS,
            "serverSelectionTimeoutMS": DB_TIMEOUT_MS,
            "connectTimeoutMS": DB_TIMEOUT_MS,
            "maxPoolSize": 1,
            "appname": "chatbot-platform-pacing",
        }
        self._client = AsyncMongoClient(database["HOST"], **options)
        self._collection = self._client[database["NAME"]][COLLECTION]
        self._loop = asyncio.get_running_loop()
        self._kick = asyncio.Event()
        self._stopping = False
        self._task = asyncio.create_task(self._sync_forever(), name="llm-pacing-sync")

    async def stop(self) -> None:
        """Stops syncing and gives this process's slots and unused permits back (waiting calls
        are cancelled)."""
        if self._task is not None:
            # Let a round of syncs in progress end rather than cancel it between its write and
            # its own bookkeeping (a usage correction then counted twice by the last sync).
            self._stopping = True
            if self._kick is not None:
                self._kick.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=STOP_WAIT_S)
            except TimeoutError:
                self._task.cancel()
                try:
                    await self._task
                except asyncio.CancelledError:
                    pass
            self._task = None
        for provider in self._providers.values():
            for queue in provider.queues.values():
                for waiter in queue:
                    waiter.future.cancel()
            provider.queues.clear()
            provider.waiting = 0
            if provider.wake is not None:
                provider.wake.cancel()
        try:
            for provider in list(self._providers.values()):
                await self._sync(provider, leaving=True)
        except PyMongoError:
            pass  # the lease lapses by itself
        if self._client is not None:
            await self._client.close()
            self._client = None

    # --- the calls' side ----------------------------------------------------------------

    async def acquire(
        self,
        provider: str,
        limits: Limits,
        *,
        bot: str,
        tokens: int,
        label: str = "",
        bot_ceiling: int | None = None,
    ) -> Permit:
        state = self._provider(provider, limits, label)
        ceiling = settings.LLM_BOT_CONCURRENCY_CEILING if bot_ceiling is None else bot_ceiling
        loop = asyncio.get_running_loop()
        waiter = Waiter(
            future=loop.create_future(),
            bot=bot,
            tokens=max(0, int(tokens)),
            ceiling=max(0, ceiling),
            enqueued=time.monotonic(),
        )
        queue = state.queues.get(bot)
        if queue is None:
            queue = state.queues[bot] = deque()
        queue.append(waiter)
        state.waiting += 1
        state.active_at = time.monotonic()
        self._dispatch(state)
        try:
            return await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self.release(waiter.future.result(), status=None, headers=None, tokens_used=0)
            elif waiter in queue:
                queue.remove(waiter)
                state.waiting -= 1
                if not queue and state.queues.get(bot) is queue:
                    del state.queues[bot]
                self._dispatch(state)
            raise

    def release(
        self,
        permit: Permit,
        *,
        status: int | None,
        headers: Mapping[str, str] | None,
        tokens_used: int | None,
    ) -> None:
        if permit.released:
            return
        permit.released = True
        state = self._providers[permit.provider]
        state.in_flight -= 1
        left = state.bot_in_flight.get(permit.bot, 1) - 1
        if left > 0:
            state.bot_in_flight[permit.bot] = left
        else:
            state.bot_in_flight.pop(permit.bot, None)
        state.active_at = time.monotonic()
        LLM_PROVIDER_CALLS_IN_FLIGHT.labels(provider=state.label).dec()
        used = permit.tokens if tokens_used is None else max(0, int(tokens_used))
        state.used_tokens += used
        if used:
            LLM_PROVIDER_TOKENS.labels(provider=state.label, bot=permit.bot).inc(used)
        if state.limits.tokens_per_minute:
            state.refund += permit.tokens - used

        lowered = {name.lower(): value for name, value in (headers or {}).items()}
        if status == 429:
            LLM_PROVIDER_429.labels(provider=state.label).inc()
            # Once per round of calls: the 429s of calls sent before the last decrease
            # describe the old window.
            if permit.started > state.last_decrease:
                state.window = max(1.0, min(state.window, state.in_flight + 1) / 2)
                state.last_decrease = time.monotonic()
        elif status is not None and status < 400:
            state.window = min(float(state.limit_window()), state.window + 1 / state.window)
        block_s = block_seconds(status, lowered)
        if block_s:
            until = time.time() + min(block_s, BLOCK_MAX_S)
            if until > state.blocked_until:
                state.blocked_until = until
                state.block_to_share = True
                self._request_sync(state)
        self._dispatch(state)

    # --- local admission ----------------------------------------------------------------

    def _provider(self, key: str, limits: Limits, label: str) -> ProviderState:
        state = self._providers.get(key)
        if state is None:
            state = self._providers[key] = ProviderState(key=key, label=label or key, limits=limits)
            state.window = float(state.limit_window())
        elif state.limits != limits:
            state.limits = limits
            state.window = min(state.window, float(state.limit_window()))
            if limits.max_concurrent and state.window < 1:
                state.window = 1.0
        if label and state.label != label:
            state.label = label
        return state

    def _cap(self, state: ProviderState) -> int:
        cap = max(1, int(state.window))
        if state.limits.max_concurrent:
            if self.database_ok:
                held = min(state.grant, state.share)
            else:
                held = max(state.grant, 1)
            if state.pending_cap is not None:
                held = min(held, state.pending_cap)
            cap = min(cap, held)
        return cap

    def _dispatch(self, state: ProviderState) -> None:
        if not state.waiting:
            return
        now = time.time()
        if state.blocked_until > now:
            self._wake_at(state, state.blocked_until - now)
            return
        limits = state.limits
        if not self.database_ok:
            self._fallback_refill(state)
        elif not state.synced and (limits.max_concurrent or limits.requests_per_minute or limits.tokens_per_minute):
            self._request_sync(state)
            return
        cap = self._cap(state)
        while state.waiting and state.in_flight < cap:
            waiter = self._next(state)
            if waiter is None:
                return  # every waiting bot is at its ceiling
            if limits.requests_per_minute and state.requests < 1:
                self._request_sync(state)
                return
            if limits.tokens_per_minute and state.tokens < waiter.tokens:
                self._request_sync(state)
                return
            self._start(state, waiter)
        if state.waiting and limits.max_concurrent and state.grant < min(limits.max_concurrent, int(state.window)):
            self._request_sync(state)  # more slots may be free, or others may give some back

    def _next(self, state: ProviderState) -> Waiter | None:
        """The head of the waiting bot served least recently (a bot never served first)."""
        best: str | None = None
        best_turn = 0
        for bot, queue in state.queues.items():
            ceiling = queue[0].ceiling
            if ceiling and state.bot_in_flight.get(bot, 0) >= ceiling:
                continue
            turn = state.served.get(bot, -1)
            if best is None or turn < best_turn:
                best, best_turn = bot, turn
        return state.queues[best][0] if best is not None else None

    def _start(self, state: ProviderState, waiter: Waiter) -> None:
        queue = state.queues[waiter.bot]
        queue.popleft()
        if not queue:
            del state.queues[waiter.bot]
        state.waiting -= 1
        state.turn += 1
        state.served[waiter.bot] = state.turn
        if len(state.served) > 10_000:  # bots seen long ago
            for bot in [bot for bot, turn in state.served.items() if turn < state.turn - 5_000]:
                del state.served[bot]
        state.in_flight += 1
        state.bot_in_flight[waiter.bot] = state.bot_in_flight.get(waiter.bot, 0) + 1
        if state.limits.requests_per_minute:
            state.requests -= 1
        if state.limits.tokens_per_minute:
            state.tokens -= waiter.tokens
        state.used_requests += 1
        started = time.monotonic()
        waited = started - waiter.enqueued
        LLM_PERMIT_WAIT_SECONDS.labels(provider=state.label).observe(waited)
        LLM_PROVIDER_CALLS_IN_FLIGHT.labels(provider=state.label).inc()
        waiter.future.set_result(
            Permit(provider=state.key, bot=waiter.bot, tokens=waiter.tokens, started=started, waited_s=waited)
        )

    def _wake_at(self, state: ProviderState, delay_s: float) -> None:
        if state.wake is not None:
            state.wake.cancel()
        loop = self._loop or asyncio.get_running_loop()
        state.wake = loop.call_later(max(0.0, delay_s), self._woken, state)

    def _woken(self, state: ProviderState) -> None:
        state.wake = None
        self._dispatch(state)

    def _fallback_refill(self, state: ProviderState) -> None:
        """While the database is out: this process's share of the rate limits, refilled
        locally."""
        now = time.monotonic()
        elapsed = max(0.0, now - state.fallback_at) if state.fallback_at else 0.0
        state.fallback_at = now
        share = max(1, state.processes)
        rpm, tpm = state.limits.requests_per_minute, state.limits.tokens_per_minute
        if rpm:
            burst = max(1.0, rpm / BUCKET_FRACTION / share)
            state.requests = min(burst, state.requests + elapsed * rpm / 60 / share)
            if state.waiting and state.requests < 1:
                self._wake_at(state, (1 - state.requests) * 60 * share / rpm)
        if tpm:
            burst = max(1.0, tpm / BUCKET_FRACTION / share)
            state.tokens = min(max(burst, state.tokens), state.tokens + elapsed * tpm / 60 / share)
            if state.waiting:
                self._wake_at(state, 1.0)

    def window(self, provider: str) -> float:
        """This process's AIMD concurrency window for the provider."""
        return self._providers[provider].window

    def in_flight(self, provider: str) -> int:
        state = self._providers.get(provider)
        return state.in_flight if state is not None else 0
