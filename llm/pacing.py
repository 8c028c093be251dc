"""Pacing of LLM calls by their provider's limits, shared by every worker process and host
through MongoDB. An asyncio API for the worker's LLM event loop:

    pacer = Pacer(process_id="host-1:4242")          # one per process, on the LLM event loop
    await pacer.start()
    permit = await pacer.acquire(provider_key, Limits(...), bot=str(bot.pk), tokens=estimate)
    try:
        answer = await call_the_llm()
    except openai.APIStatusError as exc:
        pacer.release(permit, status=exc.status_code, headers=exc.response.headers, tokens_used=None)
        raise
    except BaseException:
        pacer.release(permit, status=None, headers=None, tokens_used=None)  # timeout, cancelled...
        raise
    else:
        pacer.release(permit, status=200, headers=raw_response.headers, tokens_used=usage.total_tokens)
    ...
    await pacer.stop()                                # gives this process's slots back

What the caller must do:

- `acquire` returns only when every limit allows one more call: the call may then start at
  once (it is never sent to be refused). It waits as long as it takes: bound it with
  `asyncio.timeout()` if needed (a cancelled `acquire` leaves no trace; a permit it had just
  been given is released). `provider` is a key: the provider's id, or "default" for the
  platform's default provider. `tokens`: the call's estimate (prompt estimate + max output);
  it counts against `tokens_per_minute` until the call's `release` corrects it. `label`: the
  provider's name, for metrics (default: the key). `bot_ceiling`: at most this many of the
  bot's calls in flight on this provider in this process (default LLM_BOT_CONCURRENCY_CEILING,
  0: none).
- Every permit is released exactly once (a second release is ignored), with the answer's
  status and headers when there was one. `release` is synchronous and never touches the
  database; call it on the loop's thread.
- `acquire`/`release` run on one event loop (the one `start` ran on); they are not thread-safe.

What the limits mean, and how they are held across processes (documents of the `llm_pacing`
collection, one per provider key, `_id` the key; every write is one single-document update
guarded by a version number, retried on a conflict, never a `find_one_and_update`):

- `max_concurrent`: each process holds a grant of slots in the provider's document, with a
  lease (LEASE_S, renewed while it is used, so a dead process's grant lapses). A grant is
  raised only by a write that keeps the sum of the live grants within the limit, and a process
  starts a call only while its calls in flight are fewer than its grant: across all processes
  the calls in flight never exceed the limit. The slots are split by the processes' demand
  (max-min fair); a process holding more than its share stops starting calls beyond it and
  gives the slots back as its calls end.
- `requests_per_minute` / `tokens_per_minute`: shared token buckets in the same document
  (refilled at limit/60 a second, holding at most a tenth of the limit, so a minute's permits
  never go out in one burst). Each sync a process leases from them what its waiting calls
  need, and gives back what it did not use at the next one: a permit costs no round trip.
  A call needing more tokens than the bucket holds is let through when the bucket is not
  empty, and the debt is paid by the refill. `release(tokens_used=)` corrects the estimate.
- A 429, or `x-ratelimit-remaining-requests`/`-tokens` at 0, blocks the provider until the
  server says (`retry-after-ms`, `Retry-After`, `x-ratelimit-reset-requests`/`-tokens` such
  as "1s", "6m0s", "20ms"; a 429 saying nothing: BLOCK_DEFAULT_S; at most BLOCK_MAX_S): at
  once in this process, in the others at their next sync (within `sync_interval_s`).
- AIMD, per provider in each process: the process's concurrency window starts at
  `max_concurrent` (UNLIMITED_WINDOW without one); a 429 halves it (from the calls that were
  in flight, at least 1, once per round of calls), each success adds 1/window (+1 per
  window's worth of successes), never above the limit.
- Fair share between bots, in each process: a free slot goes to the waiting bot that was
  served least recently, so a bot with thousands of calls queued delays another bot's next
  call by at most one slot. Across processes the slots follow the processes' demand.

The database is used only by a background task (`pymongo.AsyncMongoClient`, one connection of
its own) every `sync_interval_s` (LLM_PACING_SYNC_MS), and at once when a call waits for what
only a sync can give; `acquire` and `release` never wait on it. While the database cannot be
reached, a process keeps pacing with what it holds: its grant of slots (kept, though no longer
renewed: if other processes still reach the database they may take it over once its lease
lapses, and the limit may then be overrun by it until this process syncs again), or one slot
when it holds none; requests and tokens per minute at its own share of the limit (the limit
divided by the processes it last saw); 429s and the servers' headers as before. It logs the
outage once and keeps trying; it never stops the loop.

`pacing_usage(key)` (synchronous, for the provider's admin page and API) reads the same
document: calls in flight in all processes, requests and tokens of the last minute, whether
and until when a 429 blocks the provider.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError, PyMongoError

from channels_app.outgoing_http import retry_after_s
from core.metrics import LLM_PERMIT_WAIT_SECONDS, LLM_PROVIDER_429, LLM_PROVIDER_CALLS_IN_FLIGHT, LLM_PROVIDER_TOKENS

if TYPE_CHECKING:
    from llm.models import LLMProvider

logger = logging.getLogger("llm.pacing")

COLLECTION = "llm_pacing"
LEASE_S = 10.0  # a process's grant of slots lapses this long after its last sync
UNLIMITED_WINDOW = 10_000  # the concurrency window of a provider without max_concurrent
BLOCK_DEFAULT_S = 1.0  # a 429 that says nothing about when to come back
BLOCK_MAX_S = 600.0  # no server header blocks a provider longer than this
BUCKET_FRACTION = 10  # a rate bucket holds at most limit / 10 permits
USAGE_STEP_S = 10  # usage is counted in 10-second steps, kept for a minute
SYNC_GAP_S = 0.02  # between two rounds of syncs
IDLE_SYNC_S = 2.0  # a provider this process does not use is read this often
DB_TIMEOUT_MS = 2000
CAS_ATTEMPTS = 4
STOP_WAIT_S = 5.0  # `stop` waits this long for a round of syncs in progress


DEFAULT_PROVIDER = "default"  # the key of the platform's default provider (LLM_BACKEND, OPENAI_*)


@dataclass(frozen=True)
class Limits:
    max_concurrent: int | None = None
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


def provider_limits(provider: LLMProvider | None) -> Limits:
    """A provider's limits (None: the platform's default provider, which has none)."""
    if provider is None:
        return Limits()
    return Limits(
        max_concurrent=provider.max_concurrent or None,
        requests_per_minute=provider.requests_per_minute or None,
        tokens_per_minute=provider.tokens_per_minute or None,
    )


def provider_key(provider: LLMProvider | None) -> str:
    """The provider's key in the pacing: its id, or DEFAULT_PROVIDER."""
    return DEFAULT_PROVIDER if provider is None else str(provider.pk)


@dataclass(eq=False)
class Permit:
    provider: str
    bot: str
    tokens: int
    started: float  # time.monotonic() when it was granted
    waited_s: float
    released: bool = False


@dataclass(eq=False)
class _Waiter:
    future: asyncio.Future[Permit]
    bot: str
    tokens: int
    ceiling: int
    enqueued: float


@dataclass(eq=False)
class _Provider:
    key: str
    label: str
    limits: Limits
    queues: dict[str, deque[_Waiter]] = field(default_factory=OrderedDict)
    waiting: int = 0
    in_flight: int = 0
    bot_in_flight: dict[str, int] = field(default_factory=dict)
    served: dict[str, int] = field(default_factory=dict)  # bot -> turn it was last served
    turn: int = 0
    window: float = float(UNLIMITED_WINDOW)
    last_decrease: float = -math.inf
    # What the shared document grants this process, and its share of the provider's slots
    # (the grant may be above it while calls beyond the share end).
    grant: int = 0
    share: int = 0
    pending_cap: int | None = None  # a lower grant being written
    synced: bool = False
    requests: float = 0.0  # request permits held (leased from the shared bucket)
    tokens: float = 0.0  # token permits held
    refund: float = 0.0  # estimated tokens not used (negative: used beyond the estimate)
    used_requests: int = 0  # not yet added to the shared usage counts
    used_tokens: int = 0
    blocked_until: float = 0.0  # time.time()
    block_to_share: bool = False
    processes: int = 1  # live processes seen at the last sync, this one included
    synced_at: float = -math.inf  # time.monotonic() of the last sync
    wants_sync: bool = False  # a waiting call needs what only a sync can give
    entry: bool = False  # this process has an entry in the shared document
    fallback_at: float = 0.0  # time.monotonic() the outage refill last ran
    wake: asyncio.TimerHandle | None = None
    active_at: float = field(default_factory=time.monotonic)

    def limit_window(self) -> int:
        return self.limits.max_concurrent or UNLIMITED_WINDOW


class Pacer:
    """One per worker process, created and used on the LLM event loop (see the module's
    docstring)."""

    def __init__(self, *, process_id: str, sync_interval_s: float | None = None) -> None:
        self.process_id = process_id
        if sync_interval_s is None:
            sync_interval_s = settings.LLM_PACING_SYNC_MS / 1000
        self.sync_interval_s = max(0.01, sync_interval_s)
        self._providers: dict[str, _Provider] = {}
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
        waiter = _Waiter(
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

    def _provider(self, key: str, limits: Limits, label: str) -> _Provider:
        state = self._providers.get(key)
        if state is None:
            state = self._providers[key] = _Provider(key=key, label=label or key, limits=limits)
            state.window = float(state.limit_window())
        elif state.limits != limits:
            state.limits = limits
            state.window = min(state.window, float(state.limit_window()))
            if limits.max_concurrent and state.window < 1:
                state.window = 1.0
        if label and state.label != label:
            state.label = label
        return state

    def _cap(self, state: _Provider) -> int:
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

    def _dispatch(self, state: _Provider) -> None:
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

    def _next(self, state: _Provider) -> _Waiter | None:
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

    def _start(self, state: _Provider, waiter: _Waiter) -> None:
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

    def _wake_at(self, state: _Provider, delay_s: float) -> None:
        if state.wake is not None:
            state.wake.cancel()
        loop = self._loop or asyncio.get_running_loop()
        state.wake = loop.call_later(max(0.0, delay_s), self._woken, state)

    def _woken(self, state: _Provider) -> None:
        state.wake = None
        self._dispatch(state)

    def _fallback_refill(self, state: _Provider) -> None:
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

    def _request_sync(self, state: _Provider | None = None) -> None:
        if state is not None:
            state.wants_sync = True
        if self._kick is not None:
            self._kick.set()

    # --- the shared document ----------------------------------------------------------

    async def _sync_forever(self) -> None:
        assert self._kick is not None
        wait_s = self.sync_interval_s
        while not self._stopping:
            try:
                await asyncio.wait_for(self._kick.wait(), timeout=wait_s)
            except TimeoutError:
                pass
            self._kick.clear()
            wait_s = self.sync_interval_s
            ok = True
            for state in list(self._providers.values()):
                due_in = self._due_in(state, time.monotonic())
                if due_in is None:
                    del self._providers[state.key]
                    continue
                if due_in > 0:
                    wait_s = min(wait_s, due_in)
                    continue
                try:
                    await self._sync(state)
                except (PyMongoError, OSError) as exc:
                    if self.database_ok:
                        logger.warning("LLM pacing: database unreachable (%s); pacing locally", type(exc).__name__)
                        self.database_ok = False
                        for each in self._providers.values():
                            each.fallback_at = 0.0
                            self._dispatch(each)
                    ok = False
                    break  # the others would wait as long: next round
                except Exception:  # a bug must never stop the pacing of every call
                    logger.exception("LLM pacing: the sync of %s failed", state.label)
                self._dispatch(state)
            if ok and not self.database_ok:
                logger.info("LLM pacing: the database answers again")
                self.database_ok = True
                for state in self._providers.values():
                    self._dispatch(state)
            await asyncio.sleep(SYNC_GAP_S)

    def _due_in(self, state: _Provider, now: float) -> float | None:
        """Seconds until the provider's next sync (0: now); None: forgotten (long unused)."""
        held = (
            state.waiting
            or state.in_flight
            or state.grant
            or state.requests >= 1
            or state.tokens > 0
            or state.refund
            or state.used_requests
            or state.used_tokens
            or state.block_to_share
            or state.entry
        )
        since = now - state.synced_at
        if not held:
            if now - state.active_at > 300 and state.wake is None:
                return None
            # Still read now and then, for what other processes saw (a 429's block).
            return max(0.0, IDLE_SYNC_S - since)
        if not state.synced or state.block_to_share:
            return 0.0
        if state.wants_sync:
            # Asked for by a waiting call: soon, but not in a tight loop while nothing is free.
            return max(0.0, min(self.sync_interval_s, SYNC_GAP_S * 3) - since)
        return max(0.0, self.sync_interval_s - since)

    async def _sync(self, state: _Provider, *, leaving: bool = False) -> None:
        assert self._collection is not None
        state.wants_sync = False
        for _attempt in range(CAS_ATTEMPTS):
            document = await self._collection.find_one({"_id": state.key})
            state.synced_at = time.monotonic()
            plan = self._plan(state, document, time.time(), leaving=leaving)
            if plan is None:
                return
            # What this process gives up is given up before the write (so that nothing held
            # is used while others may already count it free); what it gains, after.
            self._apply(state, plan, gains=False)
            try:
                if document is None:
                    await self._collection.insert_one(plan.document)
                    written = True
                else:
                    result = await self._collection.update_one(
                        {"_id": state.key, "v": document.get("v", 0)}, {"$set": plan.document}
                    )
                    written = result.matched_count == 1
            except DuplicateKeyError:
                written = False
            except BaseException:
                self._undo(state, plan)
                raise
            if written:
                self._apply(state, plan, gains=True)
                return
            self._undo(state, plan)
        # Lost every race: others write this document all the time; try at the next sync.

    def _plan(self, state: _Provider, document: dict[str, Any] | None, now: float, *, leaving: bool) -> _Plan | None:
        document = document or {}
        limits = state.limits
        me = self.process_id
        procs: dict[str, dict[str, Any]] = {
            pid: entry
            for pid, entry in (document.get("procs") or {}).items()
            if isinstance(entry, dict) and float(entry.get("until", 0)) > now
        }
        mine = procs.pop(me, None)
        shared_block = float(document.get("blocked_until", 0.0))
        plan = _Plan(shared_block=shared_block, processes=len(procs) + 1)

        # Concurrency: this process's grant, within what the others' live grants leave.
        cap_window = max(1, int(state.window))
        want = 0 if leaving else min(state.in_flight + state.waiting, cap_window)
        if limits.max_concurrent and not leaving:
            limit = limits.max_concurrent
            want = min(want, limit)
            others = sum(int(entry.get("n", 0)) for entry in procs.values())
            wants = {pid: min(int(entry.get("want", 0)), limit) for pid, entry in procs.items()}
            wants[me] = want
            share = fair_shares(limit, wants, now)[me]
            grant = min(max(share, state.in_flight), max(0, limit - others))
        else:
            share = grant = 0
        plan.grant, plan.share = grant, share

        # Rate buckets: give back what is held, take what the waiting calls need.
        # The calls that could start before the next sync; with other processes about, at most
        # a share of a bucket each.
        k = 0 if leaving else min(state.waiting, max(1, self._cap_for(state, grant, share) - state.in_flight))
        buckets: dict[str, Any] = {}
        if limits.requests_per_minute:
            level = _refilled(document.get("rb"), limits.requests_per_minute, now)
            available = level + state.requests
            most = max(1, math.floor(2 * _capacity(limits.requests_per_minute) / (len(procs) + 1)))
            held = float(min(k, most, math.floor(available))) if available >= 1 else 0.0
            plan.requests = held
            buckets["rb"] = {"l": available - held, "at": now}
        if limits.tokens_per_minute:
            level = _refilled(document.get("tb"), limits.tokens_per_minute, now) + state.refund
            level = min(level, _capacity(limits.tokens_per_minute))
            available = level + state.tokens
            need = self._tokens_wanted(state, k)
            if available >= need:
                held = float(need)
            elif available > 0 and need:
                # Debt: one call larger than what is left still goes, and the refill pays.
                held = max(available, float(self._tokens_wanted(state, 1)))
            else:
                held = 0.0
            plan.tokens = held
            plan.refund = state.refund
            buckets["tb"] = {"l": available - held, "at": now}

        # Usage of the last minute, in steps.
        usage: dict[str, list[int]] = {
            step: list(counts)
            for step, counts in (document.get("usage") or {}).items()
            if step.isdigit() and int(step) > now - 70
        }
        if state.used_requests or state.used_tokens:
            step = str(int(now // USAGE_STEP_S) * USAGE_STEP_S)
            counts = usage.setdefault(step, [0, 0])
            counts[0] += state.used_requests
            counts[1] += state.used_tokens
            plan.used_requests, plan.used_tokens = state.used_requests, state.used_tokens

        block = max(shared_block, state.blocked_until if state.block_to_share else 0.0)
        plan.block_shared = state.block_to_share

        entry = None
        if not leaving and (want or grant or state.in_flight):
            entry = {"n": grant, "want": want, "inflight": state.in_flight, "until": now + LEASE_S}
            if (
                mine is not None
                and (mine.get("n"), mine.get("want"), mine.get("inflight")) == (grant, want, state.in_flight)
                and float(mine.get("until", 0)) - now > LEASE_S / 2
            ):
                entry = mine  # nothing new to tell the others, and the lease is fresh
        plan.entry = entry

        must_write = (
            entry is not mine
            or (mine is not None and entry is None)
            or plan.requests != state.requests
            or plan.tokens != state.tokens
            or plan.refund
            or plan.used_requests
            or plan.used_tokens
            or plan.block_shared
            or document.get("limits") != _limits_document(limits)
        )
        if not must_write:
            self._observe(state, plan)
            return None
        if entry is not None:
            procs[me] = entry
        plan.document = {
            "_id": state.key,
            "v": int(document.get("v", 0)) + 1,
            "procs": procs,
            "blocked_until": block,
            "usage": usage,
            "limits": _limits_document(limits),
            **buckets,
        }
        if "_id" in document:
            del plan.document["_id"]
        return plan

    def _cap_for(self, state: _Provider, grant: int, share: int) -> int:
        cap = max(1, int(state.window))
        if state.limits.max_concurrent:
            cap = min(cap, grant, share)
        return cap

    def _tokens_wanted(self, state: _Provider, calls: int) -> int:
        total = 0
        for queue in state.queues.values():
            for waiter in queue:
                if calls <= 0:
                    return total
                total += waiter.tokens
                calls -= 1
        return total

    def _observe(self, state: _Provider, plan: _Plan) -> None:
        """What the others wrote, taken in without a write of this process's own (its grant
        is as written: the plan's equals it)."""
        state.synced = True
        state.processes = plan.processes
        state.share = plan.share
        if plan.shared_block > state.blocked_until:
            state.blocked_until = plan.shared_block

    def _apply(self, state: _Provider, plan: _Plan, *, gains: bool) -> None:
        if not gains:
            if plan.grant < state.grant:
                state.pending_cap = plan.grant
            plan.requests_before, plan.tokens_before = state.requests, state.tokens
            state.requests = min(state.requests, plan.requests)
            state.tokens = min(state.tokens, plan.tokens)
            plan.requests_given = plan.requests_before - state.requests
            plan.tokens_given = plan.tokens_before - state.tokens
            state.refund -= plan.refund
            state.used_requests -= plan.used_requests
            state.used_tokens -= plan.used_tokens
            if plan.block_shared:
                state.block_to_share = False
            return
        # Written: what was held meanwhile and what the plan gave back add up to the new hold.
        state.pending_cap = None
        state.grant = plan.grant
        state.share = plan.share
        state.requests += max(0.0, plan.requests - plan.requests_before)
        state.tokens += max(0.0, plan.tokens - plan.tokens_before)
        state.entry = plan.entry is not None
        state.synced = True
        state.processes = plan.processes
        if plan.shared_block > state.blocked_until:
            state.blocked_until = plan.shared_block

    def _undo(self, state: _Provider, plan: _Plan) -> None:
        state.pending_cap = None
        state.requests += plan.requests_given
        state.tokens += plan.tokens_given
        state.refund += plan.refund
        state.used_requests += plan.used_requests
        state.used_tokens += plan.used_tokens
        if plan.block_shared:
            state.block_to_share = True

    # --- for tests and the worker's status ---------------------------------------------

    def window(self, provider: str) -> float:
        """This process's AIMD concurrency window for the provider."""
        return self._providers[provider].window

    def in_flight(self, provider: str) -> int:
        state = self._providers.get(provider)
        return state.in_flight if state is not None else 0


@dataclass(eq=False)
class _Plan:
    shared_block: float
    processes: int
    grant: int = 0
    share: int = 0
    requests: float = 0.0
    tokens: float = 0.0
    refund: float = 0.0
    used_requests: int = 0
    used_tokens: int = 0
    block_shared: bool = False
    entry: dict[str, Any] | None = None
    document: dict[str, Any] = field(default_factory=dict)
    # Filled in by Pacer._apply(gains=False).
    requests_before: float = 0.0
    tokens_before: float = 0.0
    requests_given: float = 0.0
    tokens_given: float = 0.0


def fair_shares(limit: int, wants: Mapping[str, int], now: float) -> dict[str, int]:
    """Max-min fair split of `limit` slots by demand. Slots that cannot be split evenly go to
    processes in an order that turns every few seconds, so none waits for ever."""
    shares = dict.fromkeys(wants, 0)
    left = limit
    pending = [pid for pid, want in wants.items() if want > 0]
    while pending and left > 0:
        each = left // len(pending)
        if each == 0:
            turn = int(now // 2)
            pending.sort(key=lambda pid: hash((pid, turn)))
            for pid in pending[:left]:
                shares[pid] += 1
            break
        for pid in pending:
            give = min(each, wants[pid] - shares[pid])
            shares[pid] += give
            left -= give
        pending = [pid for pid in pending if shares[pid] < wants[pid]]
    return shares


def _capacity(per_minute: int) -> float:
    return max(1.0, per_minute / BUCKET_FRACTION)


def _refilled(bucket: Any, per_minute: int, now: float) -> float:
    """A shared bucket's level now: full when it does not exist yet."""
    capacity = _capacity(per_minute)
    if not isinstance(bucket, dict):
        return capacity
    level, at = float(bucket.get("l", capacity)), float(bucket.get("at", now))
    return min(capacity, level + max(0.0, now - at) * per_minute / 60)


def _limits_document(limits: Limits) -> dict[str, int | None]:
    return {"c": limits.max_concurrent, "r": limits.requests_per_minute, "t": limits.tokens_per_minute}


# --- What the servers say -----------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def duration_s(text: str | None) -> float | None:
    """`x-ratelimit-reset-*` values: "1s", "6m0s", "20ms", "0.5s", "1h2m", or plain seconds."""
    text = (text or "").strip().lower()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    total, position = 0.0, 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            return None
        value, unit = float(match.group(1)), match.group(2)
        total += value * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[unit]
        position = match.end()
    return total if position == len(text) and position else None


def block_seconds(status: int | None, headers: Mapping[str, str]) -> float | None:
    """How long the server asks every process to send nothing; `headers` by lower-case name."""
    waits: list[float] = []
    for kind in ("requests", "tokens"):
        if (headers.get(f"x-ratelimit-remaining-{kind}") or "").strip() == "0":
            reset = duration_s(headers.get(f"x-ratelimit-reset-{kind}"))
            if reset is not None:
                # The reset is when the whole limit is back; one more call is allowed as soon as
                # one unit is (a minute over the limit), which a server pacing at its limit
                # keeps answering with "0 remaining": waiting for the whole reset would
                # leave the provider idle for it (measured: 6 s gaps at 600 requests/minute).
                limit = _positive_int(headers.get(f"x-ratelimit-limit-{kind}"))
                waits.append(min(reset, 60.0 / limit) if limit else reset)
    if status in (429, 503):
        retry_after = retry_after_s(headers, retry_after_ms=True)
        if retry_after is not None:
            waits.append(retry_after)
    if status == 429 and not waits:
        waits.append(BLOCK_DEFAULT_S)
    return max(waits) if waits else None


def _positive_int(text: str | None) -> int | None:
    try:
        value = int(str(text).strip())
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


# --- The provider's page ---------------------------------------------------------------------


def pacing_usage(provider: str, *, now: float | None = None) -> dict[str, Any]:
    """The provider's current use, from every process: calls in flight, requests and tokens in
    the last minute (counted in 10-second steps: 60 to 70 s), the limits the processes pace
    by, and until when the servers' answers block it (None: not blocked)."""
    from core.mongo import mongo_collection

    now = time.time() if now is None else now
    document = mongo_collection(COLLECTION).find_one({"_id": provider}) or {}
    live = [
        entry
        for entry in (document.get("procs") or {}).values()
        if isinstance(entry, dict) and float(entry.get("until", 0)) > now
    ]
    steps = [
        counts for step, counts in (document.get("usage") or {}).items() if step.isdigit() and int(step) > now - 70
    ]
    limits = document.get("limits") or {}
    blocked = float(document.get("blocked_until", 0.0))
    return {
        "calls_in_flight": sum(int(entry.get("inflight", 0)) for entry in live),
        "processes": len(live),
        "requests_last_minute": sum(int(counts[0]) for counts in steps),
        "tokens_last_minute": sum(int(counts[1]) for counts in steps),
        "limits": {
            "max_concurrent": limits.get("c"),
            "requests_per_minute": limits.get("r"),
            "tokens_per_minute": limits.get("t"),
        },
        "blocked_until": datetime.fromtimestamp(blocked, tz=UTC) if blocked > now else None,
    }
