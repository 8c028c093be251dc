"""The worker: claims due dialogues and works through them on a thread pool.

How it learns of new work: an indexed poll, and a wake-up from the processes on its host. The
webhook marks a dialogue due (`work_due_at`) in the same update that reserves the message's
position, and the worker's claim is a read of the sparse index of due dialogues, sorted by due
time, then an update by `_id` per dialogue that matches only while it is free. While there is
work, the next claims follow at once; when there is none, the worker looks again every
WORKER_POLL_MS for HOT_S, then ever less often (the wait doubles) up to every
WORKER_IDLE_POLL_MS, so that an idle worker costs the database almost nothing. Whatever makes
work on the same host (the webhook, the admin, the API) wakes it at once with a datagram
(`core.worker_wake`, WORKER_WAKE_DIR), and it looks fast again; work made on another host is
found by the poll. An empty look reads an index and costs the same whatever the number of
dialogues; a change stream would cost the database on every insert instead (docs/internals.md, "How a
reply is made: the worker"). The database is the only hand-off, so any number of workers on
any hosts share the work, and a worker that dies loses nothing: its leases expire and another
worker picks the dialogues up.

Besides the queue, every second (every IDLE_MAINTENANCE_INTERVAL_S while idle, and at once
when woken for it): parked dialogues whose channel is active again are woken, "send test
message" requests are sent, and (every 10 s) customer messages whose reply is owed but whose
dialogue is not due are found and woken (the recovery path).
"""

from __future__ import annotations

import heapq
import logging
import os
import socket
import threading
import time
from datetime import timedelta
from typing import Any

from bson import ObjectId
from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone
from pymongo.errors import PyMongoError

from channels_app.selectors import channels_active_ids
from channels_app.services import channel_owed_wake_requests_take, channel_test_requests_take, channel_test_send
from core.counters import counters_flush
from core.datetimes import aware
from core.errors import is_database_outage
from core.worker_wake import HOUSEKEEPING, WakeSocket
from dialogues.store.claims import (
    DialogueClaim,
    dialogue_lease,
    dialogue_leases_extend,
    dialogue_release,
    dialogues_claim,
    dialogues_defer,
    dialogues_due,
    dialogues_waiting,
)
from dialogues.store.recovery import channel_owed_due_now, orphans_wake, parked_dialogues, parked_resume
from llm.aio import LLMRuntime
from worker.bulkheads import Slots
from worker.fairpool import FairPool
from worker.steps import Step, StepKind
from worker.tasks import DialogueTask

logger = logging.getLogger("worker")

MAINTENANCE_INTERVAL_S = 1.0
# After its last work (or wake-up) the worker looks every WORKER_POLL_MS for this long: a
# conversation's next message often follows within it. Then the wait doubles after each empty
# look, up to WORKER_IDLE_POLL_MS, and the housekeeping runs every IDLE_MAINTENANCE_INTERVAL_S.
HOT_S = 2.0
# Due times of given-back dialogues kept for the idle wait (`_idle_wait`), up to this many and
# this far ahead; beyond, the poll finds them.
MAX_DUES_KEPT = 10_000
DUE_KEPT_WITHIN_S = 600.0
IDLE_MAINTENANCE_INTERVAL_S = 5.0
# How long the backlog of a tenant at its limit is set aside: at first DEFER_S, then as long as
# the tenant has been at its limit so far (a channel that hangs stays blocked; moving its whole
# backlog every second would cost the database work for every other tenant), up to DEFER_MAX_S.
DEFER_S = 1.0
DEFER_MAX_S = 8.0
ORPHAN_SWEEP_INTERVAL_S = 10.0
# After a database error the loop waits this long, doubling up to the maximum.
OUTAGE_BACKOFF_S = 0.5
OUTAGE_BACKOFF_MAX_S = 5.0
# Due dialogues read and claimed per look, at most (the next look follows at once while there
# is room and work).
CLAIM_BATCH = 256
# The turn of the worker's own work on its threads (test messages), beside the bots' (FairPool).
OWN_TURN = "worker"


class Worker:
    def __init__(
        self,
        *,
        threads: int | None = None,
        poll_ms: int | None = None,
        idle_poll_ms: int | None = None,
        dialogues: int | None = None,
    ):
        self.threads = threads or settings.WORKER_THREADS
        # Dialogues in hand at once: those waiting for the LLM hold no thread (`worker.tasks`).
        self.capacity = dialogues or settings.WORKER_DIALOGUES
        self.poll_s = (poll_ms or settings.WORKER_POLL_MS) / 1000
        self.idle_poll_s = max(self.poll_s, (idle_poll_ms or settings.WORKER_IDLE_POLL_MS) / 1000)
        self.slots = Slots()
        self.pool = FairPool(self.threads)
        self.stopping = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._in_flight: set[ObjectId] = set()
        self._tasks: dict[ObjectId, DialogueTask] = {}
        self.runtime = LLMRuntime()  # started on the first call that has to wait
        self._next_lease_check = 0.0
        self._last_maintenance = float("-inf")
        # When work was last claimed or in hand, or a wake-up came (see HOT_S).
        self._active_at = time.monotonic()
        self._idle_wait_s = self.poll_s
        self._maintain_now = False
        # When (monotonic) the dialogues this worker gave back are due again, soonest first: a
        # backed-off worker looks then, not a poll later (a burst's quiet time, a retry's backoff).
        self._dues: list[float] = []
        self._next_orphan_sweep = time.monotonic() + ORPHAN_SWEEP_INTERVAL_S
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.counts = {"dialogues": 0, "errors": 0}
        self._deferred: dict[ObjectId, float] = {}
        self._saturated_since: dict[ObjectId, float] = {}
        # Dialogues this worker put back for a moment, and until when (see `drain`).
        self._bounced: dict[ObjectId, Any] = {}
        self._patient = False

    # --- the loop -----------------------------------------------------------------------------

    def run(self) -> None:
        """Until `stop()`: claim and work, look again when idle, survive database outages."""
        logger.info(
            "worker started",
            extra={"worker": self.name, "threads": self.threads, "dialogues": self.capacity,
                   "poll_ms": round(self.poll_s * 1000), "idle_poll_ms": round(self.idle_poll_s * 1000)},
        )  # fmt: skip
        wake_socket = self._wake_socket_open()
        backoff = OUTAGE_BACKOFF_S
        try:
            while not self.stopping.is_set():
                # Cleared before the look, so that a wake-up during it makes the wait below end.
                self._wake.clear()
                try:
                    claimed = self.schedule()
                    self.maintain()
                    backoff = OUTAGE_BACKOFF_S
                except (DatabaseError, PyMongoError) as exc:
                    # Nothing is lost: work stays due in the database, leases expire by themselves.
                    logger.warning("worker: database unavailable (%s); retrying in %.1f s", type(exc).__name__, backoff)
                    self.stopping.wait(backoff)
                    backoff = min(OUTAGE_BACKOFF_MAX_S, backoff * 2)
                    continue
                if claimed:
                    self._active_at = time.monotonic()
                else:
                    self._wake.wait(self._idle_wait())
        finally:
            if wake_socket is not None:
                wake_socket.close()

    def _idle_wait(self) -> float:
        """How long to wait before the next look: WORKER_POLL_MS while there is work in hand or
        there was lately, then doubling up to WORKER_IDLE_POLL_MS."""
        now = time.monotonic()
        with self._lock:
            busy = bool(self._in_flight)
        if busy or self.pool.busy():
            self._active_at = now
        if now - self._active_at < HOT_S:
            self._idle_wait_s = self.poll_s
        else:
            self._idle_wait_s = min(self.idle_poll_s, self._idle_wait_s * 2)
        with self._lock:
            while self._dues and self._dues[0] <= now:
                heapq.heappop(self._dues)
            due = self._dues[0] if self._dues else None
        return self._idle_wait_s if due is None else min(self._idle_wait_s, due - now)

    def _wake_socket_open(self) -> WakeSocket | None:
        if not settings.WORKER_WAKE_DIR:
            return None
        wake_socket = WakeSocket(settings.WORKER_WAKE_DIR)
        if not wake_socket.open():
            return None
        threading.Thread(target=self._wake_listen, args=(wake_socket,), name="worker-wake", daemon=True).start()
        return wake_socket

    def _wake_listen(self, wake_socket: WakeSocket) -> None:
        while not self.stopping.is_set():
            kind = wake_socket.receive()
            if not kind:
                return  # closed
            self.woken(housekeeping=kind == HOUSEKEEPING)

    def woken(self, *, housekeeping: bool = False) -> None:
        """Someone made work: look fast for a while, and now if the worker had backed off
        (`housekeeping`: run it now). A worker looking every WORKER_POLL_MS anyway is not
        interrupted: under load every message would cost an extra look, most of them too early
        (a message is due WORK_DUE_DELAY after its reservation)."""
        now = time.monotonic()
        backed_off = self._idle_wait_s > self.poll_s or now - self._active_at >= HOT_S
        self._active_at = now
        if housekeeping:
            self._maintain_now = True
        if backed_off or housekeeping:
            self._wake.set()

    def stop(self, *, wait_s: float = 10.0) -> None:
        """Stops claiming; waits up to `wait_s` for the dialogues in hand. Those still waiting
        for the LLM then are abandoned: their leases expire and they come back (a reply is
        stored and sent once whoever makes it)."""
        self.stopping.set()
        self._wake.set()
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._in_flight and not self.pool.busy():
                    break
            time.sleep(0.02)
        self.runtime.stop()
        self.pool.shutdown(wait=False, cancel=True)
        counters_flush()  # the counts this process holds (LLM usage, the dashboard's hours)

    def schedule(self) -> bool:
        """Claims due dialogues while it has room (WORKER_DIALOGUES). True when it claimed any."""
        claimed = False
        while not self.stopping.is_set():
            with self._lock:
                free = min(CLAIM_BATCH, self.capacity - len(self._in_flight))
            if free <= 0:
                break
            channels, bots = self.slots.saturated_channels(), self.slots.saturated_bots()
            self._defer(channels, bots)
            due = dialogues_due(limit=free, exclude_channels=channels, exclude_bots=bots)
            if not due:
                break
            with self._lock:
                # Ours already (an earlier lease expired while we work on it): not claimed again.
                free_docs = [doc for doc in due if doc["_id"] not in self._in_flight]
            for claim in dialogues_claim(free_docs):
                self._start(claim)
                claimed = True
            if len(due) < free:
                break
        return claimed

    def _defer(self, channels: list[ObjectId], bots: list[ObjectId]) -> None:
        """A tenant at its limit: its other due dialogues wait out of the way, for longer the
        longer it stays at its limit."""
        now = time.monotonic()
        saturated = {*channels, *bots}
        for key in [key for key in self._saturated_since if key not in saturated]:
            del self._saturated_since[key]
        for key in saturated:
            self._saturated_since.setdefault(key, now)
        fresh_channels = [key for key in channels if self._deferred.get(key, 0.0) <= now]
        fresh_bots = [key for key in bots if self._deferred.get(key, 0.0) <= now]
        if not fresh_channels and not fresh_bots:
            return
        for key in fresh_channels + fresh_bots:
            span = min(DEFER_MAX_S, max(DEFER_S, now - self._saturated_since[key]))
            self._deferred[key] = now + span * 0.9
            until = timezone.now() + timedelta(seconds=span)
            if key in fresh_channels:
                dialogues_defer(channel_ids=[key], bot_ids=[], until=until)
            else:
                dialogues_defer(channel_ids=[], bot_ids=[key], until=until)

    def _submit(self, work: Any, argument: Any, *, key: Any = OWN_TURN) -> None:
        """On a thread, in `key`'s turn (a bot's id; FairPool). Once stopping, dropped: a
        dialogue's lease expires by itself."""
        self.pool.submit(key, work, argument)

    def _start(self, claim: DialogueClaim) -> DialogueTask:
        with self._lock:
            self._in_flight.add(claim.dialogue_id)
            task = self._tasks[claim.dialogue_id] = DialogueTask(
                claim,
                slots=self.slots,
                runtime=self.runtime,
                submit=lambda work, argument: self._submit(work, argument, key=claim.chat_bot_id),
                finish=self._finished,
            )
        task.start()
        return task

    def work_one(self, claim: DialogueClaim, *, timeout_s: float = 30.0) -> None:
        """Works the claimed dialogue to the end of its pass and returns (tests)."""
        self._start(claim)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if claim.dialogue_id not in self._in_flight:
                    return
            time.sleep(0.005)
        raise TimeoutError(f"the dialogue was still in hand after {timeout_s} s")

    def _finished(self, task: DialogueTask, step: Step | None, exc: BaseException | None) -> None:
        """A dialogue's pass ended (on a worker thread): `step` as it ended, or `exc`."""
        claim = task.claim
        try:
            if exc is None:
                assert step is not None
                self._settled(claim, step)
            else:
                self._failed(claim, exc)
        finally:
            with self._lock:
                self._in_flight.discard(claim.dialogue_id)
                self._tasks.pop(claim.dialogue_id, None)
            connection.close_if_unusable_or_obsolete()
            self._wake.set()

    def _settled(self, claim: DialogueClaim, step: Step) -> None:
        self.counts["dialogues"] += 1
        if step.kind is StepKind.WAIT and step.until is not None:
            wait_s = (aware(step.until) - timezone.now()).total_seconds()
            if 0 < wait_s < DUE_KEPT_WITHIN_S:
                with self._lock:
                    if len(self._dues) < MAX_DUES_KEPT:
                        # A moment after, so that the look finds it due.
                        heapq.heappush(self._dues, time.monotonic() + wait_s + 0.002)
        with self._lock:
            if step.bounce and step.until is not None and self._patient:
                self._bounced[claim.dialogue_id] = step.until
            else:
                self._bounced.pop(claim.dialogue_id, None)

    def _failed(self, claim: DialogueClaim, exc: BaseException) -> None:
        self.counts["errors"] += 1
        if isinstance(exc, DatabaseError | PyMongoError) and is_database_outage(exc):
            logger.warning("worker: database unavailable while working on a dialogue: %s", type(exc).__name__)
        else:
            logger.error("worker: dialogue failed", exc_info=exc, extra={"dialogue": str(claim.dialogue_id)})
        # Give it back for a later try, if the database lets us; otherwise its lease
        # expires and it comes back by itself.
        try:
            dialogue_release(claim, done_seq=claim.done_seq, due_at=timezone.now() + _retry_delay(exc))
        except (DatabaseError, PyMongoError):
            pass

    def extend_waiting_leases(self, *, now: float | None = None) -> int:
        """Dialogues waiting long for their LLM answer (a provider's limits pace their call)
        keep their leases: one write for all of them, only when a wait has lasted a third of a
        lease (a call within its timeout never needs it)."""
        now = time.monotonic() if now is None else now
        threshold = dialogue_lease().total_seconds() / 3
        with self._lock:
            waiting = [
                task.claim
                for task in self._tasks.values()
                if task.waiting_since is not None and now - task.waiting_since >= threshold
            ]
        if waiting:
            dialogue_leases_extend(waiting)
            with self._lock:
                for claim in waiting:
                    task = self._tasks.get(claim.dialogue_id)
                    if task is not None and task.waiting_since is not None:
                        task.waiting_since = now  # counted again from here
        return len(waiting)

    # --- housekeeping -------------------------------------------------------------------------

    def maintain(self, *, force: bool = False) -> None:
        now = time.monotonic()
        interval = MAINTENANCE_INTERVAL_S if now - self._active_at < HOT_S else IDLE_MAINTENANCE_INTERVAL_S
        if not force and not self._maintain_now and now - self._last_maintenance < interval:
            return
        self._maintain_now = False
        self._last_maintenance = now
        self.extend_waiting_leases(now=now)
        resume_parked()
        self.send_test_messages()
        channels_reachable_again()
        if force or now >= self._next_orphan_sweep:
            self._next_orphan_sweep = now + ORPHAN_SWEEP_INTERVAL_S
            woken = orphans_wake()
            if woken:
                logger.info("worker: woke %d dialogue(s) whose reply was owed", woken)

    def send_test_messages(self) -> None:
        """The admin's "send test message" requests, each sent once, on the pool."""
        for channel_id in channel_test_requests_take():
            self._submit(channel_test_deliver, channel_id)

    # --- for tests and `deliver_pending` ---------------------------------------------------------

    def drain(self, *, timeout_s: float = 30.0, patient: bool = False) -> None:
        """Works until nothing is due (work waiting for a retry's backoff stays), then returns.
        `patient`: also waits for the dialogues it put back for a moment (a tenant's slots were
        taken, a breaker's probe was in flight), so that a one-off pass finishes them."""
        self._patient = patient
        self.maintain(force=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            claimed = self.schedule()
            with self._lock:
                busy = bool(self._in_flight) or self.pool.busy()
            if not claimed and not busy:
                self.maintain(force=True)
                if not self.schedule():
                    with self._lock:
                        idle = not self._in_flight and not self.pool.busy()
                        bounced = patient and bool(self._bounced)
                    if idle and not bounced:
                        return
                    if idle and bounced:
                        self._forget_settled_bounces()
            self._wake.wait(0.01)
            self._wake.clear()
        raise TimeoutError(f"work still due after {timeout_s} s")

    def _forget_settled_bounces(self) -> None:
        """Bounced dialogues that no longer wait (another worker took them) are not waited for."""
        with self._lock:
            bounced = list(self._bounced)
        still = {doc["_id"] for doc in dialogues_waiting(dialogue_ids=bounced)}
        with self._lock:
            for dialogue_id in bounced:
                if dialogue_id not in still:
                    self._bounced.pop(dialogue_id, None)

    def close(self) -> None:
        self.runtime.stop()
        self.pool.shutdown(wait=True)


def _retry_delay(exc: BaseException) -> timedelta:
    return timedelta(seconds=1 if is_database_outage(exc) else 5)


def resume_parked() -> int:
    """Parked dialogues whose channel is active again go back to the queue."""
    parked = parked_dialogues()
    if not parked:
        return 0
    active = channels_active_ids(channel_ids=list({doc["channel_id"] for doc in parked}))
    woken = parked_resume(channel_ids=active)
    if woken:
        logger.info("worker: resumed %d parked dialogue(s)", woken)
    return woken


def channels_reachable_again() -> int:
    """Channels whose breaker an operator closed (`channels_app.services.channel_breaker_close`):
    what they are owed is retried now. Each request is taken by one worker."""
    # A cached copy of the channel that still shows it open is checked against the database
    # before anything waits on it (`channels_app.breaker.breaker_wait_until`).
    return sum(channel_owed_due_now(channel_id=channel_id) for channel_id in channel_owed_wake_requests_take())


def channel_test_deliver(channel_id: ObjectId) -> None:
    """Sends a requested test message; delivered, what the channel is owed is retried now."""
    if channel_test_send(channel_id=channel_id):
        woken = channel_owed_due_now(channel_id=channel_id)
        logger.info(
            "worker: test message delivered; breaker closed", extra={"channel": str(channel_id), "woken": woken}
        )
