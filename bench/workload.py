"""The load, the floor's runs and growth: messages driven through the real server (or, for the
floor, stored by pymongo threads), each measured twice:

- ingest: how fast the webhook acknowledges (acks/s) and its latency (request to 200);
- end to end: how fast replies reach the channel (replies/s, from the first message sent to
  the last reply received) and, per message, from the moment its 200 arrived at the load
  generator to the moment the receiver got the reply whose `in_reply_to` is that message
  (both stamped on CLOCK_MONOTONIC, see bench.stats.clock).

A run may be measured in several segments (interleaved with other runs, so that all see the
same state of the database); each segment ends when every reply has arrived.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
from bson import ObjectId
from pymongo import UpdateOne
from pymongo.database import Database

from bench.dbstats import DbCounters, DbDelta, worker_reads
from bench.stack import Stack, machine_busy_seconds
from bench.stats import clock, summarize

WEBHOOK_PATH = "/api/webhook/new_message"
FILL_SPACING = timedelta(seconds=20)
# After the last reply arrived, the worker still records the outcome and releases the
# dialogue: the segment's counters are read this much later.
SETTLE_S = 0.2


@dataclass
class Sent:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    # message_id -> when its 2xx arrived (CLOCK_MONOTONIC)
    acks: dict[str, float] = field(default_factory=dict)
    started_at: float = 0.0
    finished_at: float = 0.0

    @property
    def wall_s(self) -> float:
        return self.finished_at - self.started_at

    @property
    def non_2xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300) + sum(self.errors.values())


def message_body(*, chat_id: str, index: int) -> dict[str, Any]:
    return {
        "message_id": str(uuid.uuid4()),
        "chat_id": chat_id,
        "text": f"Hello, I need help with order {index}",
        "message_sender": "customer",
    }


async def _post(session: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str],
                sent: Sent) -> None:  # fmt: skip
    started = clock()
    try:
        async with session.post(url + WEBHOOK_PATH, json=body, headers=headers) as response:
            await response.read()
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        name = type(exc).__name__
        sent.errors[name] = sent.errors.get(name, 0) + 1
        return
    done = clock()
    sent.latencies_ms.append((done - started) * 1000)
    sent.statuses[status] = sent.statuses.get(status, 0) + 1
    if 200 <= status < 300:
        sent.acks[body["message_id"]] = done
    sent.finished_at = max(sent.finished_at, done)


async def drive(
    *, url: str, secret: str, bodies: list[dict[str, Any]], concurrency: int, timeout_s: float = 60.0
) -> Sent:
    """Sends every body once, `concurrency` requests in flight at a time (a closed loop)."""
    sent = Sent()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    headers = {"x-chatbot_auth_token": f"Bearer {secret}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:

        async def worker() -> None:
            while True:
                try:
                    body = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                await _post(session, url, body, headers, sent)

        sent.started_at = sent.finished_at = clock()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sent


async def drive_at_rate(
    *,
    url: str,
    secret: str,
    make_body: Callable[[int], dict[str, Any]],
    rate: float,
    count: int | None = None,
    stop: asyncio.Event | None = None,
    max_in_flight: int = 256,
    timeout_s: float = 60.0,
) -> Sent:
    """Sends at a fixed rate whatever the answers take (an open loop), `count` messages or
    until `stop` is set."""
    sent = Sent()
    headers = {"x-chatbot_auth_token": f"Bearer {secret}"}
    connector = aiohttp.TCPConnector(limit=max_in_flight)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        tasks: list[asyncio.Task[None]] = []
        sent.started_at = sent.finished_at = clock()
        i = 0
        while (count is None or i < count) and not (stop is not None and stop.is_set()):
            due = sent.started_at + i / rate
            delay = due - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_post(session, url, make_body(i), headers, sent)))
            i += 1
        await asyncio.gather(*tasks)
    return sent


def warm_up(stack: Stack, *, messages: int = 40) -> None:
    """Opens connections, loads code paths and caches before anything is measured, and waits
    for the worker to reply to all of it."""
    bot_id, secret = stack.create_bot("bench warm-up")
    path = "/hook/warm-up"
    channels = [stack.create_channel(bot_id=bot_id, name=f"warm-up {i}", path=path) for i in range(2)]
    bodies = [message_body(chat_id=channels[i % 2], index=i) for i in range(messages)]
    asyncio.run(drive(url=stack.app_url, secret=secret, bodies=bodies, concurrency=8))
    wait_for_replies(stack, path=path, expected=messages, stall_s=30)


def wait_for_replies(stack: Stack, *, path: str, expected: int, stall_s: float = 30.0) -> dict[str, int]:
    """Until the receiver holds `expected` distinct replies on `path`, or none has come for
    `stall_s` seconds."""
    stats = stack.receiver_stats(path)
    last_progress, seen = time.monotonic(), stats["unique_replies"]
    while stats["unique_replies"] < expected and time.monotonic() - last_progress < stall_s:
        time.sleep(0.05)
        stats = stack.receiver_stats(path)
        if stats["unique_replies"] != seen:
            last_progress, seen = time.monotonic(), stats["unique_replies"]
    return stats


class CpuMeter:
    """CPU seconds per process of the stack, summed over the measured segments only."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.total: dict[str, float] = {}
        self._before: dict[str, float] = {}
        # The whole machine's busy CPU seconds over the same intervals: what is not ours was
        # taken by other processes (another test run on the same machine skews everything).
        self.machine = 0.0
        self._machine_before = 0.0

    def __enter__(self) -> CpuMeter:
        self._before = self.stack.cpu_seconds()
        self._machine_before = machine_busy_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        after = self.stack.cpu_seconds()
        self.machine += machine_busy_seconds() - self._machine_before
        for name, value in after.items():
            self.total[name] = self.total.get(name, 0.0) + value - self._before.get(name, 0.0)

    def others_seconds(self) -> float:
        return max(0.0, self.machine - sum(self.total.values()))

    def per_message_ms(self, messages: int) -> dict[str, float]:
        return {name: round(value * 1000 / messages, 2) for name, value in self.total.items() if value > 0.0005}


class Measured:
    """What a run measures over its segments: acknowledgements, replies, CPU, database work."""

    kind = "load"

    def __init__(self, stack: Stack, counters: DbCounters, *, path: str, stall_s: float = 30.0):
        self.stack = stack
        self.counters = counters
        self.path = path
        self.stall_s = stall_s
        self.sent = Sent()
        self.ingest_wall_s = 0.0
        self.e2e_wall_s = 0.0
        self.measured_wall_s = 0.0
        self.ack_to_receipt_ms: list[float] = []
        self.cpu = CpuMeter(stack)
        self.db = DbDelta()
        self.segments = 0

    @property
    def messages(self) -> int:
        return sum(self.sent.statuses.values()) + sum(self.sent.errors.values())

    def measure(self, send: Callable[[], Sent]) -> Sent:
        """Runs one segment: `send`, then waits for every acknowledged message's reply."""
        before = self.counters.snapshot()
        started = clock()
        with self.cpu:
            sent = send()
            expected = len(self.sent.acks) + len(sent.acks)
            wait_for_replies(self.stack, path=self.path, expected=expected, stall_s=self.stall_s)
            time.sleep(SETTLE_S)
        after = self.counters.snapshot()
        self.measured_wall_s += clock() - started
        self.db.add(before, after, self.counters.overhead)
        receipts = self.stack.receiver_receipts(self.path)
        arrived = [receipts[m][0] for m in sent.acks if m in receipts]
        self.ack_to_receipt_ms += [(receipts[m][0] - t) * 1000 for m, t in sent.acks.items() if m in receipts]
        self.ingest_wall_s += sent.wall_s
        self.e2e_wall_s += (max(arrived) if arrived else sent.finished_at) - sent.started_at
        self._merge(sent)
        self.segments += 1
        return sent

    def _merge(self, sent: Sent) -> None:
        self.sent.latencies_ms += sent.latencies_ms
        self.sent.acks.update(sent.acks)
        for status, n in sent.statuses.items():
            self.sent.statuses[status] = self.sent.statuses.get(status, 0) + n
        for name, n in sent.errors.items():
            self.sent.errors[name] = self.sent.errors.get(name, 0) + n

    def replies_check(self) -> dict[str, Any]:
        """Every acknowledged message answered exactly once at the receiver, by in_reply_to."""
        receipts = self.stack.receiver_receipts(self.path)
        stats = self.stack.receiver_stats(self.path)
        acked = self.sent.acks
        return {
            "replies_received": sum(1 for m in acked if m in receipts),
            "replies_lost": sum(1 for m in acked if m not in receipts),
            "replies_duplicated": sum(1 for m in acked if receipts.get(m, (0, 0))[1] > 1),
            "replies_unexpected": sum(1 for m in receipts if m not in acked),
            "reply_posts": stats["posts"],
            "bad_webhook_id": stats["bad_webhook_id"],
            "missing_auth": stats["missing_auth"],
        }

    def common_result(self) -> dict[str, Any]:
        messages = self.messages
        cpu_total = sum(self.cpu.total.values())
        return {
            "messages": messages,
            "segments": self.segments,
            "ingest": {
                "wall_s": round(self.ingest_wall_s, 3),
                "acks_per_s": round(len(self.sent.acks) / self.ingest_wall_s, 1) if self.ingest_wall_s else 0.0,
                "latency_ms": summarize(self.sent.latencies_ms),
            },
            "e2e": {
                "wall_s": round(self.e2e_wall_s, 3),
                "replies_per_s": round(len(self.ack_to_receipt_ms) / self.e2e_wall_s, 1) if self.e2e_wall_s else 0.0,
                "ack_to_receipt_ms": summarize(self.ack_to_receipt_ms),
            },
            "statuses": {str(k): v for k, v in sorted(self.sent.statuses.items())},
            "client_errors": self.sent.errors,
            "non_2xx": self.sent.non_2xx,
            # Milliseconds of CPU per message, by process, over the segments (sending, the
            # replies, and SETTLE_S after the last one): where the time goes.
            "cpu_ms_per_message": self.cpu.per_message_ms(messages),
            "cpu_busy_fraction": round(cpu_total / (self.measured_wall_s * (os.cpu_count() or 1)), 2)
            if self.measured_wall_s
            else 0.0,
            # The machine's CPU used by processes that are not the benchmark's, meanwhile.
            "others_cpu_fraction": round(self.cpu.others_seconds() / (self.measured_wall_s * (os.cpu_count() or 1)), 2)
            if self.measured_wall_s
            else 0.0,
            "db": self.db.per_message(messages),
            "db_worker": worker_reads(self.db, messages=messages, wall_s=self.measured_wall_s),
        }


def stored_check(db: Database, *, bot_id: str, messages: int, channels: int) -> dict[str, Any]:
    bot = ObjectId(bot_id)
    coll = db.dialogues_message
    return {
        "messages_stored": coll.count_documents({"chat_bot_id": bot}),
        "customer_messages_replied": coll.count_documents(
            {"chat_bot_id": bot, "role": "USER", "reply_state": "replied"}
        ),  # fmt: skip
        "replies_delivered": coll.count_documents(
            {"chat_bot_id": bot, "role": "ASSISTANT", "delivery_state": "delivered"}
        ),  # fmt: skip
        "dialogues": db.dialogues_dialogue.count_documents({"chat_bot_id": bot}),
    }


def is_correct(r: dict[str, Any], *, messages: int, channels: int) -> bool:
    return (
        r["non_2xx"] == 0
        and r["replies_received"] == messages
        and r["replies_lost"] == 0
        and r["replies_duplicated"] == 0
        and r["replies_unexpected"] == 0
        and r["bad_webhook_id"] == 0
        and r["messages_stored"] == 2 * messages
        and r["customer_messages_replied"] == messages
        and r["replies_delivered"] == messages
        and r["dialogues"] == channels
    )


# Another tenant's traffic, run beside a segment until told to stop.
Companion = Callable[[asyncio.Event], Coroutine[Any, Any, Any]]


class LoadRun(Measured):
    """The webhook through the real server, with the worker replying, for one bot."""

    def __init__(self, stack: Stack, counters: DbCounters, *, channels: int, concurrency: int, name: str,
                 path: str | None = None, stall_s: float = 30.0):  # fmt: skip
        super().__init__(stack, counters, path=path or f"/hook/{name}", stall_s=stall_s)
        self.name = name
        self.concurrency = concurrency
        self.bot_id, self.secret = stack.create_bot(f"bench {name}")
        self.channel_ids = [
            stack.create_channel(bot_id=self.bot_id, name=f"{name} {i}", path=self.path) for i in range(channels)
        ]
        self.rate: float | None = None

    def body(self, i: int) -> dict[str, Any]:
        return message_body(chat_id=self.channel_ids[i % len(self.channel_ids)], index=i)

    def segment(self, messages: int, *, alongside: Companion | None = None) -> Any:
        """`messages` at this run's concurrency (closed loop). `alongside` runs at the same time
        (another tenant's traffic) and is told to stop when this run's sending is done."""
        offset = self.messages
        bodies = [self.body(offset + i) for i in range(messages)]
        other: list[Any] = []

        async def both() -> Sent:
            stop = asyncio.Event()
            task = asyncio.create_task(alongside(stop)) if alongside else None
            sent = await drive(url=self.stack.app_url, secret=self.secret, bodies=bodies,
                               concurrency=self.concurrency)  # fmt: skip
            stop.set()
            if task is not None:
                other.append(await task)
            return sent

        self.measure(lambda: asyncio.run(both()))
        return other[0] if other else None

    def segment_at_rate(self, messages: int, *, rate: float) -> None:
        """`messages` at a fixed rate (an open loop): the latency at a load the stack keeps up with."""
        offset = self.messages
        self.rate = rate
        self.measure(lambda: asyncio.run(drive_at_rate(url=self.stack.app_url, secret=self.secret,
                                                       make_body=lambda i: self.body(offset + i), rate=rate,
                                                       count=messages)))  # fmt: skip

    def result(self, db: Database) -> dict[str, Any]:
        r = self.common_result()
        r.update(name=self.name, channels=len(self.channel_ids), concurrency=self.concurrency, rate=self.rate)
        r.update(self.replies_check())
        r.update(stored_check(db, bot_id=self.bot_id, messages=r["messages"], channels=len(self.channel_ids)))
        r["correct"] = is_correct(r, messages=r["messages"], channels=len(self.channel_ids))
        return r


# --- growth --------------------------------------------------------------------------------------


def _prefill(db: Database, *, chat_bot_id: str, channel_id: str, size: int) -> ObjectId:
    """Brings the channel's dialogue to `size` messages. The first exchange went through the
    webhook and the worker, so its two documents are the templates: the filler has exactly
    the fields the app writes, whatever they are. The worker's marks on the dialogue
    (`done_seq`) say that all of it is settled, as it would be."""
    dialogue = db.dialogues_dialogue.find_one({"chat_bot_id": ObjectId(chat_bot_id), "chat_id": channel_id})
    if dialogue is None:
        raise SystemExit("error: the first webhook message did not create a dialogue")
    existing = list(db.dialogues_message.find({"dialogue_id": dialogue["_id"]}))
    user_template = next(m for m in existing if m["role"] == "USER")
    reply_template = next(m for m in existing if m["role"] == "ASSISTANT")
    to_add = size - len(existing)
    # Older than the real exchange, so the real messages stay the newest, and spread as a
    # busy real dialogue is (FILL_SPACING apart: 10,000 messages span about two days).
    start = min(m["created_at"] for m in existing) - FILL_SPACING * (to_add + 1)
    batch: list[dict[str, Any]] = []
    for i in range(0, to_add - 1, 2):
        user_id = str(uuid.uuid4())
        at = start + FILL_SPACING * i
        user = {**user_template, "_id": ObjectId(), "message_id": user_id, "text": f"filler {i}", "created_at": at}
        reply = {
            **reply_template,
            "_id": ObjectId(),
            "message_id": str(uuid.uuid4()),
            "in_reply_to": user_id,
            "text": f"filler reply {i}",
            "created_at": at + timedelta(milliseconds=5),
        }
        if reply.get("delivered_at") is not None:
            reply["delivered_at"] = at + timedelta(milliseconds=10)
        batch += [user, reply]
        if len(batch) >= 2000:
            db.dialogues_message.insert_many(batch, ordered=False)
            batch = []
    if batch:
        db.dialogues_message.insert_many(batch, ordered=False)
    total = db.dialogues_message.count_documents({"dialogue_id": dialogue["_id"]})
    # Positions in time order, as the app hands them out, and the dialogue's counters after
    # the last one, so new messages continue the sequence.
    ordered = db.dialogues_message.find({"dialogue_id": dialogue["_id"]}, {"_id": 1}).sort(
        [("created_at", 1), ("_id", 1)]
    )
    db.dialogues_message.bulk_write(
        [UpdateOne({"_id": doc["_id"]}, {"$set": {"seq": i}}) for i, doc in enumerate(ordered, start=1)]
    )
    db.dialogues_dialogue.update_one(
        {"_id": dialogue["_id"]}, {"$set": {"message_count": total, "last_seq": total, "done_seq": total}}
    )
    return dialogue["_id"]


def run_growth(stack: Stack, db: Database, *, sizes: list[int], messages: int, rate: float) -> list[dict[str, Any]]:
    """Webhook latency and ack-to-receipt at each dialogue size. Messages are paced (`rate`
    a second, an open loop) rather than sent back to back: at concurrency 1 with no pause the
    webhook (two round trips) outruns the worker, and both would then measure a saturated
    database instead of the dialogue's size."""
    bot_id, secret = stack.create_bot("bench growth")
    results = []
    for size in sizes:
        path = f"/hook/growth-{size}"
        channel_id = stack.create_channel(bot_id=bot_id, name=f"growth {size}", path=path)
        first = asyncio.run(
            drive(url=stack.app_url, secret=secret, bodies=[message_body(chat_id=channel_id, index=0)], concurrency=1)
        )
        if first.non_2xx:
            raise SystemExit(f"error: the growth dialogue's first message failed: {first.statuses} {first.errors}")
        # Its reply is the filler's template, and the dialogue must be settled before it grows.
        wait_for_replies(stack, path=path, expected=1)
        time.sleep(SETTLE_S)
        dialogue_id = _prefill(db, chat_bot_id=bot_id, channel_id=channel_id, size=size)
        prefilled = db.dialogues_message.count_documents({"dialogue_id": dialogue_id})
        time.sleep(1.0)  # the prefill's writes settle; they are not what is measured
        bodies = [message_body(chat_id=channel_id, index=i) for i in range(1, messages + 1)]
        sent = asyncio.run(
            drive_at_rate(url=stack.app_url, secret=secret, rate=rate, count=messages, make_body=bodies.__getitem__)
        )
        wait_for_replies(stack, path=path, expected=1 + len(sent.acks))
        time.sleep(SETTLE_S)
        receipts = stack.receiver_receipts(path)
        e2e = [(receipts[m][0] - t) * 1000 for m, t in sent.acks.items() if m in receipts]
        lost = sum(1 for m in sent.acks if m not in receipts)
        doubled = sum(1 for m in sent.acks if receipts.get(m, (0, 0))[1] > 1)
        after = db.dialogues_message.count_documents({"dialogue_id": dialogue_id})
        results.append(
            {
                "size": prefilled,
                "messages": messages,
                "rate": rate,
                "latency_ms": summarize(sent.latencies_ms),
                "ack_to_receipt_ms": summarize(e2e),
                "non_2xx": sent.non_2xx,
                "replies_lost": lost,
                "replies_duplicated": doubled,
                "stored_after": after,
                "correct": sent.non_2xx == 0 and lost == 0 and doubled == 0 and after == prefilled + 2 * messages,
            }
        )
    return results


# --- the floor -----------------------------------------------------------------------------------


class FloorRun(Measured):
    """The floor (bench.floor) at one thread count: T ingest threads here, and the floor's
    worker with T threads in its own process, started for each segment. The app's worker is
    paused meanwhile (it holds no work then), so that its idle look-ups are not counted here."""

    kind = "floor"

    def __init__(self, stack: Stack, counters: DbCounters, db: Database, *, channels: int, threads: int,
                 db_name: str, name: str | None = None):  # fmt: skip
        super().__init__(stack, counters, path=f"/hook/{name or f'floor-t{threads}'}")
        from bench.floor import FloorIngest

        self.threads = threads
        self.db_name = db_name
        self.bot_id, _secret = stack.create_bot(f"bench floor t={threads}")
        self.channel_ids = [
            stack.create_channel(bot_id=self.bot_id, name=f"floor t={threads} {i}", path=self.path)
            for i in range(channels)
        ]
        self.ingest = FloorIngest(db=db, chat_bot_id=ObjectId(self.bot_id))
        self.worker_counts: dict[str, int] = {}
        # The floor's worker reaches the database as the app's does (overridden by the
        # diagnostic phase, which puts its counting proxy in between).
        self.worker_url = stack.mongo.app_url

    def segment(self, messages: int) -> None:
        from bench.floor import FloorWorkerProcess, ingest_threads

        offset = self.messages
        worker = FloorWorkerProcess(url=self.worker_url, db_name=self.db_name, bot_id=self.bot_id,
                                    threads=self.threads, log_path=self.stack.out_dir / "floor-worker.log")  # fmt: skip
        self.stack.pause_worker()
        try:
            self.stack.extra_processes["floor worker"] = [worker.start()]

            def send() -> Sent:
                acks, latencies, errors, started, ended = ingest_threads(
                    self.ingest, channel_ids=self.channel_ids, offset=offset, messages=messages, threads=self.threads
                )
                sent = Sent(latencies_ms=latencies, acks=acks, started_at=started, finished_at=ended)
                sent.statuses = {200: len(acks)} if acks else {}
                for name in errors:
                    sent.errors[name] = sent.errors.get(name, 0) + 1
                return sent

            self.measure(send)
        finally:
            counts = worker.stop()
            self.stack.extra_processes.pop("floor worker", None)
            self.stack.resume_worker()
        for name, n in counts.items():
            self.worker_counts[name] = self.worker_counts.get(name, 0) + n

    def result(self, db: Database) -> dict[str, Any]:
        r = self.common_result()
        r.update(
            threads=self.threads,
            channels=len(self.channel_ids),
            worker_counts=self.worker_counts,
            reservation_conflicts=self.ingest.conflicts,
        )
        if self.measured_wall_s:
            r["worker_counts"]["empty_polls_per_s"] = round(
                self.worker_counts.get("empty_polls", 0) / self.measured_wall_s, 1
            )
        r.update(self.replies_check())
        r.update(stored_check(db, bot_id=self.bot_id, messages=r["messages"], channels=len(self.channel_ids)))
        r["correct"] = is_correct(r, messages=r["messages"], channels=len(self.channel_ids))
        return r


# --- the simplest-design floor ---------------------------------------------------------------


class SimpleRun(Measured):
    """The simplest-design floor (bench.simple) under the same load generator as the app: its own
    gunicorn, its own database on the same server, the same receiver. The app's worker is
    paused during its segments, as during the floor's."""

    kind = "simple"

    def __init__(self, stack: Stack, *, channels: int, concurrency: int, name: str | None = None):
        from bench.simple import DB_NAME, SimpleServer

        name = name or f"simple-c{concurrency}"
        super().__init__(stack, DbCounters(stack.mongo.url, DB_NAME), path=f"/hook/{name}")
        self.name = name
        self.concurrency = concurrency
        self.server = SimpleServer(mongo_url=stack.mongo.app_url, admin_url=stack.mongo.url, workers=stack.workers,
                                   threads=stack.threads, log_path=stack.out_dir / "simple.log").start()  # fmt: skip
        self.secret, self.channel_ids = self.server.tenant(
            name=name, channel_urls=[stack.receiver_url + self.path] * channels
        )
        self._warm_up()

    def _warm_up(self, messages: int = 32) -> None:
        """Connections opened and code loaded in every gunicorn worker before anything is measured."""
        secret, channel_ids = self.server.tenant(
            name=f"{self.name} warm-up", channel_urls=[self.stack.receiver_url + f"/hook/{self.name}-warm-up"]
        )
        bodies = [message_body(chat_id=channel_ids[0], index=i) for i in range(messages)]
        asyncio.run(drive(url=self.server.url, secret=secret, bodies=bodies, concurrency=self.concurrency))

    def segment(self, messages: int) -> None:
        offset = self.messages
        bodies = [message_body(chat_id=self.channel_ids[(offset + i) % len(self.channel_ids)], index=offset + i)
                  for i in range(messages)]  # fmt: skip
        self.stack.pause_worker()
        self.stack.extra_processes["simple floor (gunicorn)"] = self.server.pids()
        try:
            self.measure(lambda: asyncio.run(drive(url=self.server.url, secret=self.secret, bodies=bodies,
                                                   concurrency=self.concurrency)))  # fmt: skip
        finally:
            self.stack.extra_processes.pop("simple floor (gunicorn)", None)
            self.stack.resume_worker()

    def stored_check(self) -> dict[str, Any]:
        db = self.server.db
        dialogues = [d["_id"] for d in db.dialogues.find({"chat_id": {"$in": self.channel_ids}}, {"_id": 1})]
        mine = {"dialogue_id": {"$in": dialogues}}
        return {
            "messages_stored": db.messages.count_documents(mine),
            "customer_messages_replied": len(db.messages.distinct("in_reply_to", {**mine, "role": "ASSISTANT"})),
            "replies_delivered": db.messages.count_documents(
                {**mine, "role": "ASSISTANT", "delivery_state": "delivered"}
            ),
            "dialogues": len(dialogues),
        }

    def result(self) -> dict[str, Any]:
        r = self.common_result()
        r.update(name=self.name, channels=len(self.channel_ids), concurrency=self.concurrency)
        r.update(self.replies_check())
        r.update(self.stored_check())
        r["correct"] = is_correct(r, messages=r["messages"], channels=len(self.channel_ids))
        return r

    def close(self) -> None:
        self.server.stop()
        self.counters.close()
