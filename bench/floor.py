"""The floor: what one customer message costs without any web framework.

The same database operations as `dialogues.services.webhook_message_process` does for a new
customer message (dialogue upsert, USER insert, history query, ASSISTANT insert, USER
update, dialogue counter, delivery record), the same mock LLM work and the same POST to the
same receiver, done with pymongo and requests from threads in this process. Bot and channel
look-ups are done once up front, as the app's per-process cache does under load.

Keep this in step with dialogues/services.py and dialogues/delivery.py: the load result is
reported as a fraction of this floor.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from bson import ObjectId
from pymongo import InsertOne, ReturnDocument, UpdateOne
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError
from requests.adapters import HTTPAdapter

from bench.stack import Stack
from bench.stats import summarize
from bench.workload import CpuMeter, wait_for_replies
from dialogues.documents import message_document

# Database round trips per customer message, counted in dialogues/services.py (cached bot and
# channel look-ups excluded): dialogue upsert, message insert, history range, reply insert +
# message update (one bulk write), delivery record.
DB_OPS_PER_MESSAGE = 5
CONTEXT_MESSAGES = 20
HISTORY_SLACK = 4  # dialogues.services.HISTORY_SLACK
LEASE = timedelta(seconds=35)


def _now() -> datetime:
    return datetime.now(UTC)


def _mock_llm(history: list[dict[str, Any]]) -> str:
    # The same work as dialogues.llm.mock_llm_call.
    if not history:
        return "Hello! How can I help you?"
    last = history[-1]
    digest = hashlib.sha256("\n".join(f"{h['role']}:{h['text']}" for h in history).encode()).hexdigest()[:8]
    return f"Echo ({len(history)} in context, {digest}): {last['text'][:200]}"


class FloorClient:
    def __init__(self, *, db: Database, receiver_url: str, token: str, chat_bot_id: ObjectId):
        self.dialogues = db.dialogues_dialogue
        self.messages = db.dialogues_message
        self.channels = db.channels_app_channel
        self.url = receiver_url
        self.token = token
        self.chat_bot_id = chat_bot_id
        # Dialogue ids by channel (one dialogue per channel here). Shared by the threads, as
        # the app's cache is by a process's threads.
        self.dialogue_ids: dict[ObjectId, ObjectId] = {}
        self.session = requests.Session()
        self.session.mount("http://", HTTPAdapter(pool_connections=32, pool_maxsize=64, max_retries=0))

    def process(self, *, channel_id: ObjectId, chat_id: str, message_id: str, text: str) -> None:
        now = _now()
        key = {"chat_bot_id": self.chat_bot_id, "channel_id": channel_id, "chat_id": chat_id}
        # 1. Two positions reserved on the dialogue (the message's and its reply's); a first
        # message creates the dialogue first, as dialogues.services.dialogue_upsert does.
        # A dialogue seen before is updated by its id, as the app's per-process id cache does.
        reserve = {"$inc": {"last_seq": 2, "message_count": 2}, "$max": {"last_message_at": now}}
        dialogue = None
        known = self.dialogue_ids.get(channel_id)
        if known is not None:
            dialogue = self.dialogues.find_one_and_update(
                {"_id": known}, reserve, projection={"_id": 1, "last_seq": 1}, return_document=ReturnDocument.AFTER
            )
        for _attempt in range(0 if dialogue is not None else 3):
            dialogue = self.dialogues.find_one_and_update(
                key, reserve, projection={"_id": 1, "last_seq": 1}, return_document=ReturnDocument.AFTER
            )
            if dialogue is not None:
                self.dialogue_ids[channel_id] = dialogue["_id"]
                break
            try:
                self.dialogues.update_one(
                    key,
                    {"$setOnInsert": {"created_at": now, "last_message_at": now, "last_seq": 0, "message_count": 0}},
                    upsert=True,
                )
            except DuplicateKeyError:
                pass
        assert dialogue is not None
        dialogue_id = dialogue["_id"]
        seq = int(dialogue["last_seq"]) - 1
        common = {"dialogue_id": dialogue_id, "chat_bot_id": self.chat_bot_id, "channel_id": channel_id}
        # 2. The customer message.
        user = message_document(
            **common, message_id=message_id, role="USER", text=text, created_at=now, seq=seq,
            reply_state="awaiting", claimed_until=now + LEASE,
        )  # fmt: skip
        self.messages.insert_one(user)
        # 3. The LLM context: a bounded range on (dialogue, seq), widened when gaps leave it short.
        history: list[dict[str, Any]] = []
        for window in (CONTEXT_MESSAGES + HISTORY_SLACK, 2 * CONTEXT_MESSAGES):
            lowest = max(seq - window + 1, 0)
            history = list(self.messages.find({"dialogue_id": dialogue_id, "seq": {"$gte": lowest, "$lte": seq}}))
            if len(history) >= CONTEXT_MESSAGES or lowest == 0:
                break
        history.sort(key=lambda doc: doc["seq"])
        reply_text = _mock_llm(history[-CONTEXT_MESSAGES:])
        at = _now()
        reply = message_document(
            **common, message_id=str(uuid.uuid4()), role="ASSISTANT", text=reply_text, created_at=at,
            seq=seq + 1, in_reply_to=message_id, delivery_state="pending", claimed_until=at + LEASE,
        )  # fmt: skip
        # 4. The reply and the message marked replied, in one round trip.
        self.messages.bulk_write(
            [InsertOne(reply),
             UpdateOne({"_id": user["_id"]}, {"$set": {"reply_state": "replied", "claimed_until": None}})],
            ordered=True,
        )  # fmt: skip
        # The same POST as channels_app.dispatch.
        body = json.dumps(
            {"message_id": reply["message_id"], "role": "ASSISTANT", "text": reply_text, "chat_id": chat_id,
             "in_reply_to": message_id},
            ensure_ascii=False,
        ).encode()  # fmt: skip
        response = self.session.post(
            self.url,
            data=body,
            headers={"x-chat_auth_token": f"Bearer {self.token}", "Content-Type": "application/json",
                     "Accept": "application/json", "User-Agent": "chatbot-platform/1.0"},
            timeout=(3, 10),
            allow_redirects=False,
        )  # fmt: skip
        status = response.status_code
        response.close()
        done = _now()
        # 5. The delivery attempt recorded.
        self.messages.update_one(
            {"_id": reply["_id"]},
            {"$set": {"last_status_code": status, "last_error": "", "delivery_state": "delivered", "delivered_at": done,
                      "next_attempt_at": None, "claimed_until": None}, "$inc": {"delivery_attempts": 1}},
        )  # fmt: skip


WARM_UP_MESSAGES = 20


class FloorRun:
    """The floor in one or more segments (see workload.LoadRun)."""

    path = "/hook/floor"

    def __init__(self, stack: Stack, db: Database, *, channels: int, threads: int):
        self.stack = stack
        self.threads = threads
        self.bot_id, _secret = stack.create_bot("bench floor")
        self.channel_ids = [
            stack.create_channel(bot_id=self.bot_id, name=f"floor {i}", path=self.path) for i in range(channels)
        ]
        # The one-off look-up the app caches: the channel's token.
        token = db.channels_app_channel.find_one({"_id": ObjectId(self.channel_ids[0])})["settings"]["token"]
        self.client = FloorClient(db=db, receiver_url=stack.receiver_url + "/hook/floor-warm-up", token=token,
                                  chat_bot_id=ObjectId(self.bot_id))  # fmt: skip
        first = self.channel_ids[0]
        for i in range(WARM_UP_MESSAGES):  # pools and code paths, not measured
            self.client.process(channel_id=ObjectId(first), chat_id=first, message_id=f"warm-{i}", text="hi")
        self.client.url = stack.receiver_url + self.path
        self.messages = 0
        self.wall_s = 0.0
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.cpu = CpuMeter(stack)

    def segment(self, messages: int) -> None:
        work: queue.Queue[tuple[str, int]] = queue.Queue()
        k = len(self.channel_ids)
        for i in range(messages):
            work.put((self.channel_ids[(self.messages + i) % k], i))
        lock = threading.Lock()

        def worker() -> None:
            while True:
                try:
                    channel_id, i = work.get_nowait()
                except queue.Empty:
                    return
                started = time.perf_counter()
                try:
                    self.client.process(
                        channel_id=ObjectId(channel_id),
                        chat_id=channel_id,
                        message_id=str(uuid.uuid4()),
                        text=f"Hello, I need help with order {i}",
                    )
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    with lock:
                        self.errors.append(type(exc).__name__)
                    continue
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    self.latencies.append(elapsed)

        pool = [threading.Thread(target=worker) for _ in range(self.threads)]
        with self.cpu:
            started = time.perf_counter()
            for t in pool:
                t.start()
            for t in pool:
                t.join()
            self.wall_s += time.perf_counter() - started
        self.messages += messages

    def result(self, db: Database) -> dict[str, Any]:
        messages = self.messages
        received = wait_for_replies(self.stack, messages, path=self.path)
        stored = db.dialogues_message.count_documents({"chat_bot_id": ObjectId(self.bot_id)}) - 2 * WARM_UP_MESSAGES
        return {
            "messages": messages,
            "threads": self.threads,
            "wall_s": round(self.wall_s, 3),
            "throughput_msg_s": round(messages / self.wall_s, 1),
            "latency_ms": summarize(self.latencies),
            "errors": len(self.errors),
            "replies_received": received["unique_replies"],
            "messages_stored": stored,
            "db_ops_per_message": DB_OPS_PER_MESSAGE,
            # The floor's client is this process ("load generator").
            "cpu_ms_per_message": self.cpu.per_message_ms(messages),
            "correct": not self.errors and received["unique_replies"] == messages and stored == 2 * messages,
        }
