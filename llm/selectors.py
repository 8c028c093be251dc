"""Reads about what the LLM did, for the admin."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from bson import ObjectId
from django.utils import timezone

from dialogues.store.usage import usage_by_day


@dataclass(frozen=True)
class DayUsage:
    day: date
    replies: int  # replies generated (ASSISTANT messages, fallback texts included)
    tokens: int  # prompt + completion tokens, where the backend reported them
    failures: int  # customer messages left without a reply + replies that went dead


def chatbot_llm_usage_by_day(*, chat_bot_id: ObjectId, days: int = 30, now: datetime | None = None) -> list[DayUsage]:
    """The bot's last `days` days (UTC), newest first, every day present (zeros included),
    from the per-day counts the worker keeps (`dialogues.store.usage`): one small read,
    whatever the traffic."""
    today = (now or timezone.now()).astimezone(UTC).date()
    wanted = [today - timedelta(days=offset) for offset in range(days)]
    counts = usage_by_day(chat_bot_id=chat_bot_id, days=wanted)
    usage = []
    for day in wanted:
        row = counts.get(day.isoformat(), {})
        usage.append(
            DayUsage(
                day=day,
                replies=int(row.get("replies", 0)),
                tokens=int(row.get("tokens", 0)),
                failures=int(row.get("failures", 0)),
            )
        )
    return usage
