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
    """The bot's last `days` days (UTC), newest first, every day present (zeros included).
    One aggregation over the bot's messages of the period, grouped by day."""
    now = now or datetime.now(UTC)
    today = now.astimezone(UTC).date()
    start_day = today - timedelta(days=days - 1)
    start = datetime(start_day.year, start_day.month, start_day.day, tzinfo=UTC)
    assistant, user = Message.Role.ASSISTANT.value, Message.Role.USER.value
    failed, dead = Message.ReplyState.FAILED.value, DeliveryState.DEAD.value
    pipeline: list[dict[str, Any]] = [
        {
            "$match": {
                "chat_bot_id": chat_bot_id,
                "created_at": {"$gte": start},
                "$or": [{"role": assistant}, {"role": user, "reply_state": failed}],
            }
        },
        {
            "$group": {
                "_id": {"$dateToString": {"format": "%Y-%m-%d", "date": "$created_at"}},
                "replies": {"$sum": {"$cond": [{"$eq": ["$role", assistant]}, 1, 0]}},
                "tokens": {
                    "$sum": {"$add": [{"$ifNull": ["$prompt_tokens", 0]}, {"$ifNull": ["$completion_tokens", 0]}]}
                },
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
        },
    ]
    collection = cast(Any, connection).get_collection(Message._meta.db_table)
    rows = {row["_id"]: row for row in collection.aggregate(pipeline) if row["_id"]}
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
