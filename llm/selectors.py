"""Reads about what the LLM did, for the admin."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

from bson import ObjectId
from django.db import connection

from channels_app.models import DeliveryState
from dialogues.models import Message


@dataclass(frozen=True)
class DayUsage:
    day: date
    replies: int  # replies generated (ASSISTANT messages, fallback texts included)
    tokens: int  # prompt + completion tokens, where the backend reported them
    failures: int  # customer messages left without a reply + replies that went dead


def chatbot_llm_usage_by_day(*, chat_bot_id: ObjectId, days: int = 30, now: datetime | None = None) -> list[DayUsage]:
    """The bot's last `days` days (UTC), newest first, every day present (zeros included),
    grouped by day by the database."""
    now = now or datetime.now(UTC)
    today = now.astimezone(UTC).date()
    start_day = today - timedelta(days=days - 1)
    start = datetime(start_day.year, start_day.month, start_day.day, tzinfo=UTC)
    assistant, user = Message.Role.ASSISTANT.value, Message.Role.USER.value
    failed, dead = Message.ReplyState.FAILED.value, DeliveryState.DEAD.value
    # One aggregation per state, each an equality and a range on an index ((delivery_state,
    # created_at) for replies, (reply_state, created_at) for customer messages), the bot checked
    # on what the range reads: the bot's messages have no index of their own, and a filter led
    # by the bot, or an `$or`, makes the embedded server read every message.
    matches: list[dict[str, Any]] = [
        {"delivery_state": state, "created_at": {"$gte": start}, "chat_bot_id": chat_bot_id, "role": assistant}
        for state in DeliveryState.values
    ]
    matches.append({"reply_state": failed, "created_at": {"$gte": start}, "chat_bot_id": chat_bot_id, "role": user})
    group = {
        "$group": {
            "_id": {"$dateToString": {"format": "%Y-%m-%d", "date": "$created_at"}},
            "replies": {"$sum": {"$cond": [{"$eq": ["$role", assistant]}, 1, 0]}},
            "tokens": {"$sum": {"$add": [{"$ifNull": ["$prompt_tokens", 0]}, {"$ifNull": ["$completion_tokens", 0]}]}},
            "failures": {
                "$sum": {
                    "$cond": [
                        {"$or": [{"$eq": ["$reply_state", failed]}, {"$eq": ["$delivery_state", dead]}]},
                        1,
                        0,
                    ]
                }
            },
        }
    }
    collection = cast(Any, connection).get_collection(Message._meta.db_table)
    rows: dict[str, dict[str, int]] = {}
    for match in matches:
        for row in collection.aggregate([{"$match": match}, group]):
            if not row["_id"]:
                continue
            total = rows.setdefault(row["_id"], {"replies": 0, "tokens": 0, "failures": 0})
            for key in total:
                total[key] += int(row.get(key, 0))
    usage = []
    for offset in range(days):
        day = today - timedelta(days=offset)
        row = rows.get(day.isoformat(), {})
        usage.append(
            DayUsage(
                day=day,
                replies=int(row.get("replies", 0)),
                tokens=int(row.get("tokens", 0)),
                failures=int(row.get("failures", 0)),
            )
        )
    return usage
