"""Dialogues and messages written straight into the database with `insert_many`, shaped as
the app writes them (`dialogues.documents.message_document`, the dialogue fields of
`dialogues.store`), so that every admin and API page shows them:

- spread over the given bots and channels: each channel's own dialogue (chat_id = the
  channel's id), the others opened through `channel_id` (chat_id `seed-NNNNNN`), counted
  in the bot's `dialogue_counters`;
- customer messages and the bot's replies in pairs; every twentieth dialogue has an
  employee's message from the channel, every tenth one paused (an operator took it over:
  the operator's message, delivered, and the bot's reply not yet delivered cancelled);
- replies mostly delivered, some failed (retry due), pending, dead or cancelled;
- everything settled for the worker (`done_seq` = `last_seq`, nothing due), so the
  seeded data costs reads only.

Run again with more messages, it tops up the same dialogues (more messages each).

    python -m bench.seed --mongo-url mongodb://127.0.0.1:PORT/?directConnection=true --messages 100000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import MongoClient, UpdateOne
from pymongo.database import Database

from dialogues.documents import message_document

PREFIX = "seed-"
BATCH = 2000
SPACING = timedelta(seconds=40)
SPAN = timedelta(days=30)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# dialogues.models.PAUSED_INDEFINITELY (this module stays importable without Django).
PAUSED_INDEFINITELY = datetime(9999, 1, 1, tzinfo=UTC)
OPERATOR = "bench-operator"
LLM = {"llm_backend": "openai", "llm_model": "bench-model", "prompt_tokens": 120, "completion_tokens": 40,
       "llm_latency_ms": 350, "llm_attempts": 0}  # fmt: skip


@dataclass
class SeedResult:
    dialogues_added: int
    messages_added: int
    dialogues: int
    messages: int
    seconds: float


def chat_id_of(index: int) -> str:
    return f"{PREFIX}{index:06d}"


def _share(total: int, parts: int, index: int) -> int:
    return total // parts + (1 if index < total % parts else 0)


def _is_paused(index: int) -> bool:
    return index % 10 == 3


def _reply_fields(index: int, n: int, at: datetime, *, paused: bool) -> dict[str, Any]:
    """A bot reply's delivery: mostly delivered; some failed, pending, dead; in a paused
    dialogue the newest reply was cancelled by the take-over."""
    if paused:
        return {"delivery_state": "cancelled"}
    kind = (index * 7 + n) % 100
    if kind < 3:
        return {"delivery_state": "failed", "delivery_attempts": 3, "last_status_code": 502,
                "last_error": "HTTP 502 from the channel", "next_attempt_at": at + timedelta(days=365)}  # fmt: skip
    if kind < 4:
        return {"delivery_state": "pending", "next_attempt_at": None}
    if kind < 5:
        return {"delivery_state": "dead", "delivery_attempts": 8, "last_status_code": 500,
                "last_error": "HTTP 500 from the channel"}  # fmt: skip
    return {"delivery_state": "delivered", "delivery_attempts": 1, "last_status_code": 200,
            "delivered_at": at + timedelta(milliseconds=400)}  # fmt: skip


def _messages_for(dialogue: dict[str, Any], index: int, count: int, *, last: bool) -> list[dict[str, Any]]:
    """`count` more messages for the dialogue, after its `last_seq` and `last_message_at`.
    With `last`, these are the dialogue's final messages (a paused dialogue ends with its
    take-over)."""
    docs: list[dict[str, Any]] = []
    seq = int(dialogue["last_seq"])
    at = dialogue["last_message_at"]
    paused = _is_paused(index) and last
    common = {"dialogue_id": dialogue["_id"], "chat_bot_id": dialogue["chat_bot_id"],
              "channel_id": dialogue["channel_id"]}  # fmt: skip
    n = 0
    while n < count:
        remaining = count - n
        at += SPACING
        if remaining == 1 or (index % 20 == 7 and n == 0):
            # An employee's message from the channel: stored, not answered, not delivered.
            seq += 1
            text = f"Employee note {seq} on chat {index}"
            docs.append(message_document(**common, message_id=str(uuid.uuid4()), role="EMPLOYEE", text=text,
                                         created_at=at, seq=seq))  # fmt: skip
            n += 1
            continue
        if paused and remaining == 2:
            # The take-over: the operator's reply (written in the admin, delivered) and the
            # customer's message after it, which the paused bot does not answer.
            seq += 1
            operator = message_document(**common, message_id=str(uuid.uuid4()), role="EMPLOYEE",
                                        text=f"An operator here, looking at chat {index}", created_at=at, seq=seq,
                                        delivery_state="delivered")  # fmt: skip
            operator.update(author_id=ObjectId(b"bench-oprtor"), author_username=OPERATOR, delivery_attempts=1,
                            last_status_code=200, delivered_at=at + timedelta(milliseconds=300))  # fmt: skip
            seq += 2
            customer = message_document(**common, message_id=str(uuid.uuid4()), role="USER",
                                        text=f"Thanks, waiting ({index})", created_at=at + SPACING, seq=seq - 1,
                                        reply_state="paused")  # fmt: skip
            docs += [operator, customer]
            at += SPACING
            n += 2
            continue
        user_id = str(uuid.uuid4())
        seq += 2
        user = message_document(**common, message_id=user_id, role="USER", created_at=at, seq=seq - 1,
                                text=f"Hello, I need help with order {index}-{seq}", reply_state="replied")  # fmt: skip
        reply = message_document(**common, message_id=str(uuid.uuid4()), role="ASSISTANT", in_reply_to=user_id,
                                 text=f"Happy to help with order {index}-{seq}.", seq=seq,
                                 created_at=at + timedelta(milliseconds=600), llm=LLM)  # fmt: skip
        reply.update(_reply_fields(index, seq, at, paused=paused and remaining <= 4))
        # The reply's trace continues the customer message's.
        reply["traceparent"] = user["traceparent"][:36] + reply["traceparent"][36:]
        docs += [user, reply]
        n += 2
    dialogue["last_seq"] = seq
    dialogue["message_count"] = int(dialogue["message_count"]) + len(docs)
    dialogue["last_message_at"] = at + timedelta(seconds=1)
    return docs


def _insert(db: Database, name: str, docs: list[dict[str, Any]], pool: ThreadPoolExecutor) -> list[Any]:
    return [pool.submit(db[name].insert_many, docs[i : i + BATCH], ordered=False) for i in range(0, len(docs), BATCH)]


def seed_client(url: str) -> MongoClient:
    """A client of its own: no operation time limit (a batch of inserts takes seconds on the
    embedded server) and a connection per inserting thread, whatever the URL says."""
    return MongoClient(url, timeoutMS=None, socketTimeoutMS=None, maxPoolSize=4)


def seed(db: Database, *, tenants: list[tuple[ObjectId, ObjectId]], dialogues: int, messages: int,
         now: datetime | None = None) -> SeedResult:  # fmt: skip
    """Brings the seeded data to `dialogues` dialogues and `messages` messages in all, spread
    round robin over `tenants` (bot id, channel id): new dialogues first, then more messages
    in the existing ones, the same number for each (one more for the first few)."""
    started = time.monotonic()
    now = now or datetime.now(UTC)
    dialogues_coll, messages_coll = db.dialogues_dialogue, db.dialogues_message
    own = {str(channel): i for i, (_bot, channel) in enumerate(tenants)}
    existing = {
        doc["chat_id"]: doc
        for doc in dialogues_coll.find(
            {"chat_bot_id": {"$in": list({bot for bot, _channel in tenants})}},
            {"chat_id": 1, "chat_bot_id": 1, "channel_id": 1, "last_seq": 1, "message_count": 1, "last_message_at": 1},
        )
    }
    total = max(dialogues, len(existing))
    new_dialogues: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    futures: list[Any] = []
    added_messages = 0
    pending: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for index in range(total):
            # The first dialogue of each channel is the channel's own (chat_id = its id, the
            # existing contract's `/api/channels/{id}/dialogue`), the others opened through it.
            chat_id = str(tenants[index][1]) if index < len(tenants) else chat_id_of(index)
            dialogue = existing.get(chat_id)
            if dialogue is None:
                bot, channel = tenants[index % len(tenants)]
                created = now - SPAN + SPAN * 0.9 * ((index * 7919) % total) / total
                dialogue = {"_id": ObjectId(), "chat_bot_id": bot, "channel_id": channel, "chat_id": chat_id,
                            "created_at": created, "last_message_at": created, "message_count": 0, "last_seq": 0,
                            "claim_until": EPOCH}  # fmt: skip
                if _is_paused(index):
                    dialogue["paused_until"] = PAUSED_INDEFINITELY
                new_dialogues.append(dialogue)
            else:
                dialogue["last_message_at"] = dialogue["last_message_at"].replace(tzinfo=UTC)
            want = _share(messages, total, index) - int(dialogue["message_count"])
            if want <= 0:
                continue
            docs = _messages_for(dialogue, index, want, last=True)
            if chat_id in existing:
                changed.append(dialogue)
            pending += docs
            added_messages += len(docs)
            if len(pending) >= BATCH * 2:
                futures += _insert(db, messages_coll.name, pending, pool)
                pending = []
        futures += _insert(db, messages_coll.name, pending, pool)
        for dialogue in new_dialogues:
            dialogue["done_seq"] = dialogue["last_seq"]
        futures += _insert(db, dialogues_coll.name, new_dialogues, pool)
        for future in futures:
            future.result()
    if changed:
        dialogues_coll.bulk_write(
            [UpdateOne({"_id": d["_id"]}, {"$set": {"last_seq": d["last_seq"], "done_seq": d["last_seq"],
                                                    "message_count": d["message_count"],
                                                    "last_message_at": d["last_message_at"]}})
             for d in changed],
            ordered=False,
        )  # fmt: skip
    if new_dialogues:
        # Dialogues opened through `channel_id` take a place of their bot's (dialogues.store).
        per_bot: dict[ObjectId, int] = {}
        for dialogue in new_dialogues:
            if dialogue["chat_id"] not in own:
                per_bot[dialogue["chat_bot_id"]] = per_bot.get(dialogue["chat_bot_id"], 0) + 1
        db.dialogue_counters.bulk_write(
            [UpdateOne({"_id": bot}, {"$inc": {"dialogues": n}}, upsert=True) for bot, n in per_bot.items()]
        )
    _note_channels(db, tenants, now=now)
    return SeedResult(
        dialogues_added=len(new_dialogues),
        messages_added=added_messages,
        dialogues=total,
        messages=sum(int(d["message_count"]) for d in [*existing.values(), *new_dialogues]),
        seconds=round(time.monotonic() - started, 1),
    )  # fmt: skip


def _note_channels(db: Database, tenants: list[tuple[ObjectId, ObjectId]], *, now: datetime) -> None:
    """The channels' last delivery, as the worker notes it (the channel list shows and filters it)."""
    states = ["delivered", "failed", "delivered", "dead"]
    db.channels_app_channel.bulk_write(
        [UpdateOne({"_id": channel}, {"$set": {"last_delivery_state": states[i % len(states)],
                                               "last_delivery_at": now - timedelta(minutes=i)}})
         for i, (_bot, channel) in enumerate(tenants)]
    )  # fmt: skip


def tenants_ensure(*, bots: int = 3, channels_per_bot: int = 2, url: str) -> list[tuple[ObjectId, ObjectId]]:
    """The seed's bots and channels, created through the app's services unless they exist
    (needs Django set up). The last channel is inactive."""
    from channels_app.models import Channel
    from channels_app.services import channel_create
    from chatbots.models import ChatBot
    from chatbots.services import chatbot_create

    tenants = []
    for b in range(bots):
        bot = ChatBot.objects.filter(name=f"seed bot {b}").first() or chatbot_create(name=f"seed bot {b}")[0]
        for c in range(channels_per_bot):
            name = f"seed bot {b} channel {c}"
            active = not (b == bots - 1 and c == channels_per_bot - 1)
            channel = Channel.objects.filter(name=name, chat_bot=bot).first() or channel_create(
                chat_bot=bot, name=name, url=url, is_active=active
            )
            tenants.append((bot.pk, channel.pk))
    return tenants


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.seed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--mongo-url", required=True)
    parser.add_argument("--db-name", default="bench")
    parser.add_argument("--dialogues", type=int, default=25_000)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--channel-url", default="https://channel.example.com/hook")
    args = parser.parse_args(argv)
    os.environ["MONGO_URL"] = args.mongo_url
    os.environ["MONGO_DB_NAME"] = args.db_name
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("CHANNEL_ALLOW_PRIVATE_URLS", "true")
    import django

    django.setup()
    tenants = tenants_ensure(url=args.channel_url)
    client = seed_client(args.mongo_url)
    result = seed(client[args.db_name], tenants=tenants, dialogues=args.dialogues, messages=args.messages)
    print(f"seeded {result.dialogues_added} dialogues and {result.messages_added} messages in {result.seconds} s "
          f"({result.dialogues} dialogues, {result.messages} messages in all)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
