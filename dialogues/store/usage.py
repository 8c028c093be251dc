"""What the LLM did per bot and day (UTC): replies generated, tokens, failures. Counted as the
worker writes the messages they describe, so a bot's usage page reads one small document per
day instead of every message of the period.

One document per (bot, day): `{_id: "<bot id>:<YYYY-MM-DD>", chat_bot_id, day, replies,
tokens, failures}`. A count rides on the write it describes (a stored reply, a customer
message given up, a reply gone dead) and is added only when that write happened, so a pass
run again after a crash does not count twice. Usage is a report: a count that fails is logged
and never fails the reply.

The always-on worker (`usage_buffering`) adds its counts up in memory and writes them every
USAGE_FLUSH_S, one upsert per (bot, day) instead of one per reply: it stops costing the
database a write per message. A worker that dies loses at most that many seconds of counts;
`manage.py llm_usage_rebuild` recounts from the messages. Other callers (the API, one-off
commands, tests) write at once."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bson import ObjectId
from django.utils import timezone
from pymongo.errors import DuplicateKeyError, PyMongoError

from channels_app.models import DeliveryState
from core.datetimes import aware
from core.mongo import mongo_collection

logger = logging.getLogger(__name__)

USAGE_COLLECTION = "dialogues_llm_usage_daily"
USAGE_FIELDS = ("replies", "tokens", "failures")


def usage_collection() -> Any:
    return mongo_collection(USAGE_COLLECTION)


def _day(when: datetime) -> str:
    return aware(when).astimezone(UTC).date().isoformat()


# How often a buffering process writes what it counted.
USAGE_FLUSH_S = 2.0

_buffer: dict[tuple[ObjectId, str], Counter[str]] = {}
_buffer_lock = threading.Lock()
_buffer_state = {"on": False, "next_flush": 0.0}


def usage_buffering(on: bool = True) -> None:
    """From now on this process adds its counts up in memory (`usage_flush` writes them);
    `False` writes what is held and goes back to writing each count at once."""
    if not on:
        usage_flush()
    with _buffer_lock:
        _buffer_state["on"] = on
        _buffer_state["next_flush"] = time.monotonic() + USAGE_FLUSH_S


def _write(chat_bot_id: ObjectId, day: str, inc: dict[str, int]) -> bool:
    """Adds `inc` to the (bot, day) document; False when the database did not take it."""
    try:
        for _ in range(2):
            try:
                usage_collection().update_one(
                    {"_id": f"{chat_bot_id}:{day}"},
                    {"$inc": inc, "$setOnInsert": {"chat_bot_id": chat_bot_id, "day": day}},
                    upsert=True,
                )
                return True
            except DuplicateKeyError:
                continue  # two first counts of the day at once: the other one created it
    except PyMongoError as exc:
        logger.warning("llm usage not counted: %s", type(exc).__name__, extra={"bot": str(chat_bot_id)})
    return False


def usage_flush(*, due_only: bool = False) -> int:
    """Writes the counts this process holds (with `due_only`, only once USAGE_FLUSH_S has
    passed since the last write). Counts the database did not take are kept for the next
    one. Returns the number of documents written."""
    with _buffer_lock:
        now = time.monotonic()
        if due_only and now < _buffer_state["next_flush"]:
            return 0
        _buffer_state["next_flush"] = now + USAGE_FLUSH_S
        held = dict(_buffer)
        _buffer.clear()
    written = 0
    for (chat_bot_id, day), counts in held.items():
        if _write(chat_bot_id, day, dict(counts)):
            written += 1
            continue
        with _buffer_lock:
            _buffer.setdefault((chat_bot_id, day), Counter()).update(counts)
    return written


def usage_add(*, chat_bot_id: ObjectId, when: datetime, replies: int = 0, tokens: int = 0, failures: int = 0) -> None:
    counts = {"replies": replies, "tokens": tokens, "failures": failures}
    inc = {field: n for field, n in counts.items() if n}
    if not inc:
        return
    day = _day(when)
    with _buffer_lock:
        buffering = _buffer_state["on"]
        if buffering:
            _buffer.setdefault((chat_bot_id, day), Counter()).update(inc)
    if buffering:
        usage_flush(due_only=True)
    else:
        _write(chat_bot_id, day, inc)


def usage_of_reply(reply: dict[str, Any]) -> None:
    """Counts a reply just stored: one reply, its tokens, a failure if it is stored dead."""
    tokens = int(reply.get("prompt_tokens") or 0) + int(reply.get("completion_tokens") or 0)
    usage_add(
        chat_bot_id=reply["chat_bot_id"],
        when=reply.get("created_at") or timezone.now(),
        replies=1,
        tokens=tokens,
        failures=1 if reply.get("delivery_state") == DeliveryState.DEAD.value else 0,
    )


def usage_by_day(*, chat_bot_id: ObjectId, days: Iterable[date]) -> dict[str, dict[str, int]]:
    """The bot's counts by ISO day, for the days given (one read by `_id`)."""
    ids = [f"{chat_bot_id}:{day.isoformat()}" for day in days]
    return {
        doc["day"]: {field: int(doc.get(field) or 0) for field in USAGE_FIELDS}
        for doc in usage_collection().find({"_id": {"$in": ids}})
    }


def usage_rebuild(*, days: int, now: datetime | None = None) -> int:
    """Recounts the last `days` days (UTC) from the messages themselves, for data written
    before the counts were kept (`manage.py llm_usage_rebuild`). Reads each day's messages
    once, one aggregation per state on the (state, created_at) indexes; returns the number
    of (bot, day) documents written."""
    from channels_app.models import DeliveryState  # noqa: PLC0415 - only the rebuild needs it
    from dialogues.models import Message  # noqa: PLC0415

    messages = mongo_collection(Message._meta.db_table)
    today = (now or timezone.now()).astimezone(UTC).date()
    written = 0
    for offset in range(days):
        day = today - timedelta(days=offset)
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        span = {"$gte": start, "$lt": start + timedelta(days=1)}
        totals: dict[ObjectId, dict[str, int]] = {}
        matches: list[dict[str, Any]] = [
            {"delivery_state": state, "created_at": span, "role": Message.Role.ASSISTANT.value}
            for state in DeliveryState.values
        ]
        matches.append(
            {"reply_state": Message.ReplyState.FAILED.value, "created_at": span, "role": Message.Role.USER.value}
        )
        for match in matches:
            is_reply = match["role"] == Message.Role.ASSISTANT.value
            dead = match.get("delivery_state") == DeliveryState.DEAD.value
            pipeline = [
                {"$match": match},
                {
                    "$group": {
                        "_id": "$chat_bot_id",
                        "n": {"$sum": 1},
                        "tokens": {
                            "$sum": {
                                "$add": [{"$ifNull": ["$prompt_tokens", 0]}, {"$ifNull": ["$completion_tokens", 0]}]
                            }
                        },
                    }
                },
            ]
            for row in messages.aggregate(pipeline):
                total = totals.setdefault(row["_id"], dict.fromkeys(USAGE_FIELDS, 0))
                if is_reply:
                    total["replies"] += int(row["n"])
                    total["tokens"] += int(row["tokens"])
                if dead or not is_reply:
                    total["failures"] += int(row["n"])
        iso = day.isoformat()
        usage_collection().delete_many({"day": iso})
        if totals:
            usage_collection().insert_many(
                [{"_id": f"{bot}:{iso}", "chat_bot_id": bot, "day": iso, **counts} for bot, counts in totals.items()]
            )
        written += len(totals)
    return written
