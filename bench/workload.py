"""The load and growth modes: the webhook driven through the real server by an asyncio
aiohttp load generator."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
from bson import ObjectId
from pymongo import UpdateOne
from pymongo.database import Database

from bench.stack import Stack
from bench.stats import summarize

WEBHOOK_PATH = "/api/webhook/new_message"
FILL_SPACING = timedelta(seconds=20)


@dataclass
class Sent:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0

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


async def drive(
    *, url: str, secret: str, bodies: list[dict[str, Any]], concurrency: int, timeout_s: float = 60.0
) -> Sent:
    """Sends every body once, `concurrency` requests in flight at a time."""
    sent = Sent()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    headers = {"x-chatbot_auth_token": f"Bearer {secret}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=timeout_s)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            while True:
                try:
                    body = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                started = time.perf_counter()
                try:
                    async with session.post(url + WEBHOOK_PATH, json=body, headers=headers) as response:
                        await response.read()
                        status = response.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    name = type(exc).__name__
                    sent.errors[name] = sent.errors.get(name, 0) + 1
                    continue
                sent.latencies_ms.append((time.perf_counter() - started) * 1000)
                sent.statuses[status] = sent.statuses.get(status, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        sent.wall_s = time.perf_counter() - started
    return sent


def wait_for_replies(stack: Stack, expected: int, *, path: str, timeout_s: float = 15.0) -> dict[str, int]:
    # Delivery is synchronous inside the webhook, so the replies are normally all there
    # when the last response arrives; the wait only covers a slow receiver.
    deadline = time.monotonic() + timeout_s
    stats = stack.receiver_stats(path)
    while stats["unique_replies"] < expected and time.monotonic() < deadline:
        time.sleep(0.2)
        stats = stack.receiver_stats(path)
    return stats


def warm_up(stack: Stack, *, messages: int = 40) -> None:
    """Opens connections, loads code paths and caches before anything is measured."""
    bot_id, secret = stack.create_bot("bench warm-up")
    channels = [stack.create_channel(bot_id=bot_id, name=f"warm-up {i}", path="/hook/warm-up") for i in range(2)]
    bodies = [message_body(chat_id=channels[i % 2], index=i) for i in range(messages)]
    asyncio.run(drive(url=stack.app_url, secret=secret, bodies=bodies, concurrency=8))


class CpuMeter:
    """CPU seconds per process of the stack, summed over the measured segments only."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.total: dict[str, float] = {}
        self._before: dict[str, float] = {}

    def __enter__(self) -> CpuMeter:
        self._before = self.stack.cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        after = self.stack.cpu_seconds()
        for name, value in after.items():
            self.total[name] = self.total.get(name, 0.0) + value - self._before[name]

    def per_message_ms(self, messages: int) -> dict[str, float]:
        return {name: round(value * 1000 / messages, 2) for name, value in self.total.items()}


class LoadRun:
    """The webhook through the real server at one concurrency, possibly in several segments
    (interleaved with the floor's, so that both see the same state of the database)."""

    def __init__(self, stack: Stack, *, channels: int, concurrency: int):
        self.stack = stack
        self.concurrency = concurrency
        self.path = f"/hook/load-c{concurrency}"
        self.bot_id, self.secret = stack.create_bot(f"bench load c={concurrency}")
        self.channel_ids = [
            stack.create_channel(bot_id=self.bot_id, name=f"load {concurrency}/{i}", path=self.path)
            for i in range(channels)
        ]
        self.sent = Sent()
        self.messages = 0
        self.cpu = CpuMeter(stack)

    def segment(self, messages: int) -> None:
        k = len(self.channel_ids)
        bodies = [message_body(chat_id=self.channel_ids[(self.messages + i) % k], index=i) for i in range(messages)]
        with self.cpu:
            sent = asyncio.run(drive(url=self.stack.app_url, secret=self.secret, bodies=bodies,
                                     concurrency=self.concurrency))  # fmt: skip
        self.messages += messages
        self.sent.latencies_ms += sent.latencies_ms
        self.sent.wall_s += sent.wall_s
        for status, n in sent.statuses.items():
            self.sent.statuses[status] = self.sent.statuses.get(status, 0) + n
        for name, n in sent.errors.items():
            self.sent.errors[name] = self.sent.errors.get(name, 0) + n

    def result(self, db: Database) -> dict[str, Any]:
        messages, sent, channels = self.messages, self.sent, len(self.channel_ids)
        received = wait_for_replies(self.stack, messages, path=self.path)
        bot = ObjectId(self.bot_id)
        stored = db.dialogues_message.count_documents({"chat_bot_id": bot})
        stored_user = db.dialogues_message.count_documents({"chat_bot_id": bot, "role": "USER"})
        dialogues = db.dialogues_dialogue.count_documents({"chat_bot_id": bot})
        cpu_total = sum(self.cpu.total.values())
        return {
            "messages": messages,
            "channels": channels,
            "concurrency": self.concurrency,
            "wall_s": round(sent.wall_s, 3),
            "throughput_msg_s": round(messages / sent.wall_s, 1) if sent.wall_s else 0.0,
            "latency_ms": summarize(sent.latencies_ms),
            "statuses": {str(k): v for k, v in sorted(sent.statuses.items())},
            "client_errors": sent.errors,
            "non_2xx": sent.non_2xx,
            "replies_received": received["unique_replies"],
            "reply_posts": received["posts"],
            "replies_duplicated": received["duplicated"],
            "replies_lost": messages - received["unique_replies"],
            "messages_stored": stored,
            "customer_messages_stored": stored_user,
            "dialogues": dialogues,
            # Milliseconds of CPU per message, by process: where the time goes.
            "cpu_ms_per_message": self.cpu.per_message_ms(messages),
            "cpu_busy_fraction": round(cpu_total / (sent.wall_s * (os.cpu_count() or 1)), 2),
            "correct": (
                sent.non_2xx == 0
                and received["unique_replies"] == messages
                and received["duplicated"] == 0
                and received["posts"] == messages
                and stored == 2 * messages
                and dialogues == channels
            ),
        }


def run_load(stack: Stack, db: Database, *, messages: int, channels: int, concurrency: int) -> dict[str, Any]:
    run = LoadRun(stack, channels=channels, concurrency=concurrency)
    run.segment(messages)
    return run.result(db)


def _prefill(db: Database, *, chat_bot_id: str, channel_id: str, size: int) -> ObjectId:
    """Brings the channel's dialogue to `size` messages. The first exchange went through
    the webhook, so its two documents are the templates: the filler has exactly the
    fields the app writes, whatever they are."""
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
        for key in ("delivered_at",):
            if reply.get(key) is not None:
                reply[key] = at + timedelta(milliseconds=10)
        batch += [user, reply]
        if len(batch) >= 2000:
            db.dialogues_message.insert_many(batch, ordered=False)
            batch = []
    if batch:
        db.dialogues_message.insert_many(batch, ordered=False)
    total = db.dialogues_message.count_documents({"dialogue_id": dialogue["_id"]})
    update: dict[str, Any] = {"message_count": total}
    if user_template.get("seq") is not None:
        # Positions in time order, as the app hands them out, and the dialogue's counter after
        # the last one, so new messages continue the sequence.
        ordered = db.dialogues_message.find({"dialogue_id": dialogue["_id"]}, {"_id": 1}).sort(
            [("created_at", 1), ("_id", 1)]
        )
        db.dialogues_message.bulk_write(
            [UpdateOne({"_id": doc["_id"]}, {"$set": {"seq": i}}) for i, doc in enumerate(ordered, start=1)]
        )
        update["last_seq"] = total
    db.dialogues_dialogue.update_one({"_id": dialogue["_id"]}, {"$set": update})
    return dialogue["_id"]


def run_growth(stack: Stack, db: Database, *, sizes: list[int], messages: int) -> list[dict[str, Any]]:
    bot_id, secret = stack.create_bot("bench growth")
    results = []
    for size in sizes:
        channel_id = stack.create_channel(bot_id=bot_id, name=f"growth {size}")
        first = asyncio.run(
            drive(url=stack.app_url, secret=secret, bodies=[message_body(chat_id=channel_id, index=0)], concurrency=1)
        )
        if first.non_2xx:
            raise SystemExit(f"error: the growth dialogue's first message failed: {first.statuses} {first.errors}")
        dialogue_id = _prefill(db, chat_bot_id=bot_id, channel_id=channel_id, size=size)
        prefilled = db.dialogues_message.count_documents({"dialogue_id": dialogue_id})
        bodies = [message_body(chat_id=channel_id, index=i) for i in range(1, messages + 1)]
        sent = asyncio.run(drive(url=stack.app_url, secret=secret, bodies=bodies, concurrency=1))
        after = db.dialogues_message.count_documents({"dialogue_id": dialogue_id})
        results.append(
            {
                "size": prefilled,
                "messages": messages,
                "latency_ms": summarize(sent.latencies_ms),
                "non_2xx": sent.non_2xx,
                "stored_after": after,
                "correct": sent.non_2xx == 0 and after == prefilled + 2 * messages,
            }
        )
    return results
