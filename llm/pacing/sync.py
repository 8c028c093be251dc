"""Sharing a provider's limits between processes and hosts through one MongoDB document per
provider (see llm.pacing)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pymongo.errors import DuplicateKeyError, PyMongoError

from llm.pacing.limits import (
    BUCKET_FRACTION,
    CAS_ATTEMPTS,
    IDLE_SYNC_S,
    LEASE_S,
    SYNC_GAP_S,
    USAGE_STEP_S,
    Limits,
)
from llm.pacing.state import ProviderState

logger = logging.getLogger("llm.pacing")


class PacerSync:
    """The shared document's side of a `Pacer` (llm.pacing.pacer): each round reads the
    provider's document, plans this process's grant, permits and usage, and writes them by a
    compare-and-set."""

    process_id: str
    sync_interval_s: float
    database_ok: bool
    _providers: dict[str, ProviderState]
    _collection: Any
    _kick: asyncio.Event | None
    _stopping: bool

    def _dispatch(self, state: ProviderState) -> None:
        raise NotImplementedError  # the local side (`Pacer`)

    def _request_sync(self, state: ProviderState | None = None) -> None:
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

    def _due_in(self, state: ProviderState, now: float) -> float | None:
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

    async def _sync(self, state: ProviderState, *, leaving: bool = False) -> None:
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

    def _plan(
        self, state: ProviderState, document: dict[str, Any] | None, now: float, *, leaving: bool
    ) -> _Plan | None:
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

    def _cap_for(self, state: ProviderState, grant: int, share: int) -> int:
        cap = max(1, int(state.window))
        if state.limits.max_concurrent:
            cap = min(cap, grant, share)
        return cap

    def _tokens_wanted(self, state: ProviderState, calls: int) -> int:
        total = 0
        for queue in state.queues.values():
            for waiter in queue:
                if calls <= 0:
                    return total
                total += waiter.tokens
                calls -= 1
        return total

    def _observe(self, state: ProviderState, plan: _Plan) -> None:
        """What the others wrote, taken in without a write of this process's own (its grant
        is as written: the plan's equals it)."""
        state.synced = True
        state.processes = plan.processes
        state.share = plan.share
        if plan.shared_block > state.blocked_until:
            state.blocked_until = plan.shared_block

    def _apply(self, state: ProviderState, plan: _Plan, *, gains: bool) -> None:
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

    def _undo(self, state: ProviderState, plan: _Plan) -> None:
        state.pending_cap = None
        state.requests += plan.requests_given
        state.tokens += plan.tokens_given
        state.refund += plan.refund
        state.used_requests += plan.used_requests
        state.used_tokens += plan.used_tokens
        if plan.block_shared:
            state.block_to_share = True

    # --- for tests and the worker's status ---------------------------------------------


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
