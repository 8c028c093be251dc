"""What the LLM did per bot and day (UTC): replies generated, tokens, failures. Counted as the
worker writes the messages they describe, so a bot's usage page reads one small document per
day instead of every message of the period.

One document per (bot, day): `{_id: "<bot id>:<YYYY-MM-DD>", chat_bot_id, day, replies,
tokens, failures}`. A count rides on the write it describes (a stored reply, a customer
message given up, a reply gone dead) and is added only when that write happened, so a pass
run again after a crash does not count twice. Usage is a report: a count that fails is logged
and never fails the reply. Kept as `core.counters` keeps counts (added up in memory and
written every COUNTERS_FLUSH_S); `manage.py llm_usage_rebuild` recounts from the messages."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bson import ObjectId
from django.utils import timezone

from channels_app.models import DeliveryState
from core.counters import Counters
from core.datetimes import aware
from core.mongo import mongo_collection

USAGE_COLLECTION = "dialogues_llm_usage_daily"
USAGE_FIELDS = ("replies", "tokens", "failures")


def usage_collection() -> Any:
    return mongo_collection(USAGE_COLLECTION)


def _day(when: datetime) -> str:
    return aware(when).astimezone(UTC).date().isoformat()


_counters = Counters(USAGE_COLLECTION)


def usage_add(*, chat_bot_id: ObjectId, when: datetime, replies: int = 0, tokens: int = 0, failures: int = 0) -> None:
    day = _day(when)
    _counters.add(
        f"{chat_bot_id}:{day}",
        {"replies": replies, "tokens": tokens, "failures": failures},
        on_insert={"chat_bot_id": chat_bot_id, "day": day},
    )


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
    """The bot's counts by ISO day, for the days given: one range read on `_id` (from the first
    day to the day after the last; a long `$in` costs the embedded server a look-up per id)."""
    wanted = sorted(days)
    if not wanted:
        return {}
    first = f"{chat_bot_id}:{wanted[0].isoformat()}"
    after = f"{chat_bot_id}:{(wanted[-1] + timedelta(days=1)).isoformat()}"
    keep = {day.isoformat() for day in wanted}
    return {
        doc["day"]: {field: int(doc.get(field) or 0) for field in USAGE_FIELDS}
        for doc in usage_collection().find({"_id": {"$gte": first, "$lt": after}})
        if doc.get("day") in keep
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
