"""The pipeline per hour (UTC), for the admin's dashboard: customer messages that came in,
replies delivered (with how long each took, per channel, in buckets), failures (delivery
attempts a channel refused or did not answer, customer messages the LLM gave up on). Counted
where each happens (`core.counters`), so the dashboard reads 24 small documents however much
traffic there is.

One document per hour: `{_id: "YYYY-MM-DDTHH", hour, messages_in, delivered, failures,
delivery: {<channel id>: {<bucket>: n}}}`. `manage.py dashboard_rebuild` recounts the last
hours from the messages (after an upgrade, or data written around the app).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from django.utils import timezone

from channels_app.models import DeliveryState
from core.counters import Counters
from core.datetimes import aware
from core.mongo import mongo_collection
from dialogues.models import Message

ACTIVITY_COLLECTION = "dialogues_activity_hourly"
# Delivery time (reply stored -> channel accepted it) is counted in these buckets, in seconds;
# a channel's p95 is interpolated within its bucket, as Prometheus does.
DELIVERY_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

_counters = Counters(ACTIVITY_COLLECTION)


def activity_collection() -> Any:
    return mongo_collection(ACTIVITY_COLLECTION)


def hour_start(when: datetime) -> datetime:
    return aware(when).astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _key(hour: datetime) -> str:
    return hour.strftime("%Y-%m-%dT%H")


def _add(when: datetime, counts: dict[str, int]) -> None:
    hour = hour_start(when)
    _counters.add(_key(hour), counts, on_insert={"hour": hour})


def delivery_bucket(took_s: float) -> int:
    """The index of the first bucket that holds `took_s` (len(DELIVERY_BUCKETS_S) past the last)."""
    for index, bound in enumerate(DELIVERY_BUCKETS_S):
        if took_s <= bound:
            return index
    return len(DELIVERY_BUCKETS_S)


def activity_message_in(*, when: datetime) -> None:
    _add(when, {"messages_in": 1})


def activity_delivery_attempt(*, channel_id: ObjectId, ok: bool, stored_at: datetime | None, when: datetime) -> None:
    """One delivery attempt's outcome: a delivery (and how long after the reply was stored it
    was accepted), or a failure."""
    if not ok:
        _add(when, {"failures": 1})
        return
    counts = {"delivered": 1}
    if stored_at is not None:
        took_s = max(0.0, (aware(when) - aware(stored_at)).total_seconds())
        counts[f"delivery.{channel_id}.{delivery_bucket(took_s)}"] = 1
    _add(when, counts)


def activity_llm_gave_up(*, when: datetime) -> None:
    _add(when, {"failures": 1})


@dataclass
class HourCounts:
    messages_in: int = 0
    delivered: int = 0
    failures: int = 0
    # channel id -> bucket index -> replies delivered
    delivery: dict[ObjectId, Counter[int]] = field(default_factory=dict)


def activity_hours(*, start: datetime, end: datetime) -> dict[datetime, HourCounts]:
    """The counts of the hours in [start, end), by hour start: one range read on `_id`."""
    docs = activity_collection().find({"_id": {"$gte": _key(hour_start(start)), "$lt": _key(hour_start(end))}})
    hours: dict[datetime, HourCounts] = {}
    for doc in docs:
        counts = HourCounts(
            messages_in=int(doc.get("messages_in") or 0),
            delivered=int(doc.get("delivered") or 0),
            failures=int(doc.get("failures") or 0),
        )
        for channel, buckets in (doc.get("delivery") or {}).items():
            if ObjectId.is_valid(channel):
                counts.delivery[ObjectId(channel)] = Counter({int(b): int(n) for b, n in buckets.items()})
        hours[hour_start(doc["hour"])] = counts
    return hours


def _recount(*, start: datetime, end: datetime) -> dict[datetime, HourCounts]:
    """The hours in [start, end) counted from the messages: one bounded aggregation per reply
    state, an equality on reply_state and a range on created_at (the (reply_state,
    created_at) index; with `$in` over the states the embedded server scans the collection).
    A reply's failed delivery attempts (all of them but the one that went through) count as
    failures, as the worker counts them live; the recount knows no attempt's time, so they
    count at the hour the reply was written, where its outage began."""
    took_ms = {"$subtract": ["$delivered_at", "$created_at"]}
    bucket = {
        "$switch": {
            "branches": [
                {"case": {"$lte": [took_ms, bound * 1000]}, "then": index}
                for index, bound in enumerate(DELIVERY_BUCKETS_S)
            ],
            "default": len(DELIVERY_BUCKETS_S),
        }
    }
    hours: dict[datetime, HourCounts] = {}
    messages = mongo_collection(Message._meta.db_table)
    for reply_state in Message.ReplyState.values:
        # $lt, not $lte: see docs/internals.md, "Known quirks"
        match = {"reply_state": reply_state, "created_at": {"$gte": start, "$lt": end}}
        arrived = {"hour": {"$dateTrunc": {"date": "$created_at", "unit": "hour"}}, "role": "$role"}
        arrived["delivery_state"] = "$delivery_state"
        delivered = {"hour": {"$dateTrunc": {"date": "$delivered_at", "unit": "hour"}}, "channel_id": "$channel_id"}
        delivered["bucket"] = bucket
        pipeline: list[dict[str, Any]] = [
            {"$match": match},
            {
                "$facet": {
                    "arrived": [
                        {
                            "$group": {
                                "_id": arrived,
                                "n": {"$sum": 1},
                                "attempts": {"$sum": {"$ifNull": ["$delivery_attempts", 0]}},
                            }
                        }
                    ],
                    "delivered": [
                        {"$match": {"delivery_state": DeliveryState.DELIVERED.value, "delivered_at": {"$ne": None}}},
                        {"$group": {"_id": delivered, "n": {"$sum": 1}}},
                    ],
                }
            },
        ]
        for result in messages.aggregate(pipeline):
            for row in result["arrived"]:
                key, count = row["_id"], int(row["n"])
                counts = hours.setdefault(hour_start(key["hour"]), HourCounts())
                if key["role"] == Message.Role.USER:
                    counts.messages_in += count
                    if reply_state == Message.ReplyState.FAILED:
                        counts.failures += count
                elif key.get("delivery_state"):
                    # Every attempt but the one that went through failed, whatever the reply's
                    # state now: a reply delivered after an outage keeps the outage's failures.
                    went_through = count if key["delivery_state"] == DeliveryState.DELIVERED else 0
                    counts.failures += max(0, int(row.get("attempts") or 0) - went_through)
            for row in result["delivered"]:
                key, count = row["_id"], int(row["n"])
                counts = hours.setdefault(hour_start(key["hour"]), HourCounts())
                counts.delivered += count
                counts.delivery.setdefault(key["channel_id"], Counter())[int(key["bucket"])] += count
    return hours


def activity_rebuild(*, hours: int, now: datetime | None = None) -> int:
    """Recounts the last `hours` hours (the current one included) from the messages and
    replaces their documents; returns how many hours have any activity. Reads every message of
    those hours: for an upgrade or a repair, when the database is quiet."""
    current = hour_start(now or timezone.now())
    start = current - timedelta(hours=hours - 1)
    recounted = _recount(start=start, end=current + timedelta(hours=1))
    collection = activity_collection()
    for back in range(hours):
        hour = start + timedelta(hours=back)
        counts = recounted.get(hour)
        if counts is None:
            collection.delete_one({"_id": _key(hour)})
            continue
        delivery = {
            str(channel): {str(bucket): n for bucket, n in buckets.items()}
            for channel, buckets in counts.delivery.items()
        }
        document = {
            "hour": hour,
            "messages_in": counts.messages_in,
            "delivered": counts.delivered,
            "failures": counts.failures,
            "delivery": delivery,
        }
        collection.replace_one({"_id": _key(hour)}, document, upsert=True)
    return len(recounted)
