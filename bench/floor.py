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
from pymongo import ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError
from requests.adapters import HTTPAdapter

from bench.stack import Stack
from bench.stats import summarize

# Database round trips per customer message, counted in dialogues/services.py (cached bot and
# channel look-ups excluded): upsert, insert, history, insert, update, update, update.
DB_OPS_PER_MESSAGE = 7
CONTEXT_MESSAGES = 20
LEASE = timedelta(seconds=35)


def _now() -> datetime:
    return datetime.now(UTC)


def _doc(**fields: Any) -> dict[str, Any]:
    return {
        "in_reply_to": None,
        "reply_state": "",
        "delivery_state": None,
        "delivery_attempts": 0,
        "last_error": "",
        "last_status_code": None,
        "delivered_at": None,
        "next_attempt_at": None,
        "claimed_until": None,
        **fields,
    }


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
        self.session = requests.Session()
        self.session.mount("http://", HTTPAdapter(pool_connections=32, pool_maxsize=64, max_retries=0))

    def process(self, *, channel_id: ObjectId, chat_id: str, message_id: str, text: str) -> None:
        now = _now()
        key = {"chat_bot_id": self.chat_bot_id, "channel_id": channel_id, "chat_id": chat_id}
        dialogue = None
        for _attempt in (1, 2):
            try:
                dialogue = self.dialogues.find_one_and_update(
                    key,
                    {"$setOnInsert": {"created_at": now, "last_message_at": now, "message_count": 0}},
                    projection={"_id": 1},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:
                continue  # two first messages at once: the retry finds the winner's
            if dialogue is not None:
                break
            # The embedded server sometimes answers a racing upsert with no document.
            dialogue = self.dialogues.find_one(key, {"_id": 1})
            if dialogue is not None:
                break
        assert dialogue is not None
        dialogue_id = dialogue["_id"]
        common = {"dialogue_id": dialogue_id, "chat_bot_id": self.chat_bot_id, "channel_id": channel_id}
        user = _doc(**common, message_id=message_id, role="USER", text=text, created_at=now,
                    reply_state="awaiting", claimed_until=now + LEASE)  # fmt: skip
        self.messages.insert_one(user)
        cursor = (
            self.messages.find({"dialogue_id": dialogue_id}, {"_id": 1, "role": 1, "text": 1})
            .sort([("created_at", -1), ("_id", -1)])
            .batch_size(CONTEXT_MESSAGES + 2)
        )
        history = []
        for doc in cursor:
            history.append(doc)
            if len(history) >= CONTEXT_MESSAGES:
                break
        cursor.close()
        history.reverse()
        reply_text = _mock_llm(history)
        at = _now()
        reply = _doc(**common, message_id=str(uuid.uuid4()), role="ASSISTANT", text=reply_text, created_at=at,
                     in_reply_to=message_id, delivery_state="pending", claimed_until=at + LEASE)  # fmt: skip
        self.messages.insert_one(reply)
        self.messages.update_one({"_id": user["_id"]}, {"$set": {"reply_state": "replied", "claimed_until": None}})
        self.dialogues.update_one({"_id": dialogue_id}, {"$inc": {"message_count": 2}, "$max": {"last_message_at": _now()}})
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
        self.messages.update_one(
            {"_id": reply["_id"]},
            {"$set": {"last_status_code": status, "last_error": "", "delivery_state": "delivered", "delivered_at": done,
                      "next_attempt_at": None, "claimed_until": None}, "$inc": {"delivery_attempts": 1}},
        )  # fmt: skip


def run_floor(stack: Stack, db: Database, *, messages: int, channels: int, threads: int) -> dict[str, Any]:
    bot_id, _secret = stack.create_bot("bench floor")
    channel_ids = [stack.create_channel(bot_id=bot_id, name=f"floor {i}") for i in range(channels)]
    # The one-off look-ups the app caches: the channel's URL and token.
    channel_docs = {c: db.channels_app_channel.find_one({"_id": ObjectId(c)}) for c in channel_ids}
    token = next(iter(channel_docs.values()))["settings"]["token"]
    client = FloorClient(
        db=db, receiver_url=stack.receiver_url + "/hook", token=token, chat_bot_id=ObjectId(bot_id)
    )
    work: queue.Queue[tuple[str, int]] = queue.Queue()
    for i in range(messages):
        work.put((channel_ids[i % channels], i))
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        while True:
            try:
                channel_id, i = work.get_nowait()
            except queue.Empty:
                return
            started = time.perf_counter()
            try:
                client.process(channel_id=ObjectId(channel_id), chat_id=channel_id, message_id=str(uuid.uuid4()),
                               text=f"Hello, I need help with order {i}")  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - counted and reported
                with lock:
                    errors.append(type(exc).__name__)
                continue
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                latencies.append(elapsed)

    # A short warm-up of the pools, not measured.
    for i in range(20):
        client.process(channel_id=ObjectId(channel_ids[0]), chat_id=channel_ids[0], message_id=f"warm-{i}", text="hi")
    stack.receiver_reset()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    started = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.perf_counter() - started
    received = stack.receiver_stats()
    stored = db.dialogues_message.count_documents({"chat_bot_id": ObjectId(bot_id)}) - 40
    return {
        "messages": messages,
        "threads": threads,
        "wall_s": round(wall, 3),
        "throughput_msg_s": round(messages / wall, 1),
        "latency_ms": summarize(latencies),
        "errors": len(errors),
        "replies_received": received["unique_replies"],
        "messages_stored": stored,
        "db_ops_per_message": DB_OPS_PER_MESSAGE,
        "correct": not errors and received["unique_replies"] == messages and stored == 2 * messages,
    }
