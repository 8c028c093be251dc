"""The reply pipeline in numbers, for the admin's dashboard and the Deliveries screen: the
backlog by state, the open breakers, the last 24 hours by the hour, the channels slowest to
accept their replies. Each message count is an equality on the first field of an index
(delivery_state or reply_state); the hours are bounded aggregations on (reply_state,
created_at); the open breakers are a read of the channels (a small collection). Cached per
process (ADMIN_DASHBOARD_CACHE_S), so a reloading operator cannot load the database."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from channels_app.models import Channel, DeliveryState
from core.caching import LookupCache
from core.datetimes import aware
from core.mongo import mongo_collection
from dialogues.models import Message

_dashboard_cache = LookupCache(maxsize=16, ttl_s=lambda: settings.ADMIN_DASHBOARD_CACHE_S)
# The dashboard's completed hours change only when a reply of theirs is delivered, fails or
# dies later: they are read again every minute, the current hour every ADMIN_DASHBOARD_CACHE_S
# (a day of messages read every 10 s would hold the process's one database connection).
_past_hours_cache = LookupCache(maxsize=4, ttl_s=lambda: 60.0)

DASHBOARD_HOURS = 24
SLOWEST_CHANNELS = 5
# Delivery time (reply stored -> channel accepted it) is counted in these buckets, in seconds,
# by the database; a channel's p95 is interpolated within its bucket, as Prometheus does.
DELIVERY_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


# The admin's counts stop at this many: past it they show "100+", so a page costs the same
# however large a backlog grows (each count reads at most this many index entries).
COUNT_CAP = 100


# Windows of created_at, ending now and widening 3 times at each step: a capped count reads
# the smallest one that holds `cap` messages (the embedded server reads every match of a
# query before it applies a limit, so an unbounded equality would cost the whole backlog).
COUNT_WINDOWS = [timedelta(minutes=5) * 3**step for step in range(11)]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _newest(field: str, value: str, *, cap: int, now: datetime, projection: dict[str, Any]) -> list[dict[str, Any]]:
    """Up to about `cap` of the newest messages whose `field` is `value`, read on the
    (field, created_at) index: all of them when there are fewer."""
    collection = mongo_collection(Message._meta.db_table)
    for span in COUNT_WINDOWS:
        docs = list(collection.find({field: value, "created_at": {"$gte": now - span}}, projection).limit(cap))
        if len(docs) >= cap:
            return docs
    return list(collection.find({field: value, "created_at": {"$gte": EPOCH}}, projection).limit(cap))


def _count(field: str, value: str, cap: int | None, now: datetime) -> int:
    if cap is None:
        return mongo_collection(Message._meta.db_table).count_documents({field: value})
    return len(_newest(field, value, cap=cap, now=now, projection={"_id": 1}))


def backlog_counts(*, cap: int | None = None, now: datetime | None = None) -> dict[str, int]:
    """Messages by where they wait: `awaiting_reply` (no reply generated yet), replies
    `pending` or `failed` (owed; the worker retries), `parked`, `dead`, and customer messages
    the LLM failed (`llm_failed`). Each an equality on the first field of an index, counted up
    to `cap` (all without one)."""
    now = now or timezone.now()
    return {
        "awaiting_reply": _count("reply_state", Message.ReplyState.AWAITING.value, cap, now),
        "pending": _count("delivery_state", DeliveryState.PENDING.value, cap, now),
        "failed": _count("delivery_state", DeliveryState.FAILED.value, cap, now),
        "parked": _count("delivery_state", DeliveryState.PARKED.value, cap, now),
        "dead": _count("delivery_state", DeliveryState.DEAD.value, cap, now),
        "llm_failed": _count("reply_state", Message.ReplyState.FAILED.value, cap, now),
    }


def open_breakers_filter() -> QuerySet[Channel]:
    # As the Deliveries screen lists them (pipeline_summary).
    return Channel.objects.filter(breaker_open_until__isnull=False, consecutive_failures__gt=0)


def open_breakers(*, limit: int = 50) -> list[dict[str, Any]]:
    rows = open_breakers_filter().order_by("breaker_open_until")
    return [dict(row) for row in rows.values("pk", "name", "consecutive_failures", "breaker_open_until")[:limit]]


def _in_flight(now: datetime, cap: int) -> int:
    """Owed replies a worker holds a claim on, among the newest `cap` of each owed state (no
    index leads with the claim): exact while fewer are owed."""
    found = 0
    for state in (DeliveryState.PENDING.value, DeliveryState.FAILED.value):
        for doc in _newest("delivery_state", state, cap=cap, now=now, projection={"claimed_until": 1}):
            claimed = doc.get("claimed_until")
            if claimed is not None and aware(claimed) > now:
                found += 1
    return found


def _pipeline_counts(now: datetime) -> dict[str, int]:
    backlog = backlog_counts(cap=COUNT_CAP, now=now)
    return {
        "not_generated": backlog["awaiting_reply"],
        "owed": backlog["pending"] + backlog["failed"],
        "in_flight": _in_flight(now, COUNT_CAP),
        "parked": backlog["parked"],
        "dead": backlog["dead"],
        "no_reply": backlog["llm_failed"],
    }


def pipeline_summary(*, now: datetime | None = None) -> dict[str, Any]:
    """The reply pipeline at a glance, for the Deliveries screen: counts by state (each up to
    COUNT_CAP, on an index; cached ADMIN_DASHBOARD_CACHE_S per process) and the channels
    whose breaker is open (read each time: an operator closing one sees it go)."""
    if now is not None:
        counts = _pipeline_counts(now)
    else:
        counts = _dashboard_cache.get_or_load("pipeline", lambda: _pipeline_counts(timezone.now()))
    return {**counts, "cap": COUNT_CAP, "open_breakers": open_breakers()}


@dataclass(frozen=True)
class HourActivity:
    hour: datetime  # its start, UTC
    messages_in: int  # customer messages that arrived
    delivered: int  # replies delivered to their channels
    failures: int  # replies of that hour now failing or dead, customer messages the LLM failed


@dataclass(frozen=True)
class ChannelDeliveryTime:
    channel_id: ObjectId
    name: str
    delivered: int
    p95_s: float  # reply stored -> delivered, interpolated within its bucket
    beyond_s: float | None  # set instead when the p95 lies past the last bucket


@dataclass(frozen=True)
class Dashboard:
    hours: list[HourActivity]  # oldest first, the current (partial) hour last
    backlog: dict[str, int]
    open_breakers: list[dict[str, Any]]
    slowest_channels: list[ChannelDeliveryTime]


@dataclass
class _Tally:
    messages_in: Counter[datetime]
    delivered: Counter[datetime]
    failures: Counter[datetime]
    delivery_buckets: dict[ObjectId, Counter[int]]

    def add(self, other: _Tally) -> _Tally:
        buckets = {key: Counter(value) for key, value in self.delivery_buckets.items()}
        for key, value in other.delivery_buckets.items():
            buckets.setdefault(key, Counter()).update(value)
        return _Tally(
            self.messages_in + other.messages_in,
            self.delivered + other.delivered,
            self.failures + other.failures,
            buckets,
        )


def _hour(when: datetime) -> datetime:
    return aware(when).astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _tally(*, start: datetime, end: datetime | None) -> _Tally:
    """The messages that arrived in [start, end), counted by the database in one bounded
    aggregation per reply state: an equality on reply_state and a range on created_at, the
    (reply_state, created_at) index. (With `$in` over the states instead, the embedded server
    scans the whole collection.)"""
    span: dict[str, Any] = {"$gte": start}
    if end is not None:
        span["$lt"] = end  # $lt, not $lte: see README, known quirks
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
    tally = _Tally(Counter(), Counter(), Counter(), {})
    collection = mongo_collection(Message._meta.db_table)
    for reply_state in Message.ReplyState.values:
        pipeline: list[dict[str, Any]] = [
            {"$match": {"reply_state": reply_state, "created_at": span}},
            {
                "$facet": {
                    "arrived": [
                        {
                            "$group": {
                                "_id": {
                                    "hour": {"$dateTrunc": {"date": "$created_at", "unit": "hour"}},
                                    "role": "$role",
                                    "delivery_state": "$delivery_state",
                                },
                                "n": {"$sum": 1},
                            }
                        }
                    ],
                    "delivered": [
                        {"$match": {"delivery_state": DeliveryState.DELIVERED.value, "delivered_at": {"$ne": None}}},
                        {
                            "$group": {
                                "_id": {
                                    "hour": {"$dateTrunc": {"date": "$delivered_at", "unit": "hour"}},
                                    "channel_id": "$channel_id",
                                    "bucket": bucket,
                                },
                                "n": {"$sum": 1},
                            }
                        },
                    ],
                }
            },
        ]
        for result in collection.aggregate(pipeline):
            for row in result["arrived"]:
                key, count = row["_id"], int(row["n"])
                hour = _hour(key["hour"])
                if key["role"] == Message.Role.USER:
                    tally.messages_in[hour] += count
                    if reply_state == Message.ReplyState.FAILED:
                        tally.failures[hour] += count
                elif key.get("delivery_state") in (DeliveryState.FAILED, DeliveryState.DEAD):
                    tally.failures[hour] += count
            for row in result["delivered"]:
                key, count = row["_id"], int(row["n"])
                tally.delivered[_hour(key["hour"])] += count
                tally.delivery_buckets.setdefault(key["channel_id"], Counter())[int(key["bucket"])] += count
    return tally


def _p95(buckets: Counter[int]) -> tuple[float, float | None]:
    """(p95 in seconds, interpolated linearly within its bucket; or, past the last bucket,
    (its bound, its bound))."""
    total = sum(buckets.values())
    rank = 0.95 * total
    seen = 0
    for index, bound in enumerate(DELIVERY_BUCKETS_S):
        count = buckets.get(index, 0)
        if count and seen + count >= rank:
            lower = DELIVERY_BUCKETS_S[index - 1] if index else 0.0
            return lower + (bound - lower) * (rank - seen) / count, None
        seen += count
    return DELIVERY_BUCKETS_S[-1], DELIVERY_BUCKETS_S[-1]


def _slowest(buckets: dict[ObjectId, Counter[int]], *, limit: int) -> list[ChannelDeliveryTime]:
    ranked = sorted(((_p95(counts), key, counts) for key, counts in buckets.items()), key=lambda row: -row[0][0])
    top = ranked[:limit]
    names = dict(Channel.objects.filter(pk__in=[key for _, key, _ in top]).values_list("pk", "name"))
    return [
        ChannelDeliveryTime(
            channel_id=key,
            name=names.get(key, str(key)),
            delivered=sum(counts.values()),
            p95_s=p95,
            beyond_s=beyond,
        )
        for (p95, beyond), key, counts in top
    ]


def _dashboard(now: datetime) -> Dashboard:
    current = _hour(now)
    since = current - timedelta(hours=DASHBOARD_HOURS - 1)
    past = _past_hours_cache.get_or_load(current, lambda: _tally(start=since, end=current))
    tally = past.add(_tally(start=current, end=None))
    hours = [current - timedelta(hours=back) for back in range(DASHBOARD_HOURS - 1, -1, -1)]
    return Dashboard(
        hours=[
            HourActivity(
                hour=hour,
                messages_in=tally.messages_in[hour],
                delivered=tally.delivered[hour],
                failures=tally.failures[hour],
            )
            for hour in hours
        ],
        backlog=backlog_counts(cap=COUNT_CAP, now=now),
        open_breakers=open_breakers(),
        slowest_channels=_slowest(tally.delivery_buckets, limit=SLOWEST_CHANNELS),
    )


def dashboard_summary(*, now: datetime | None = None) -> Dashboard:
    """The admin index's numbers: the last 24 hours by the hour (UTC), the backlog, the open
    breakers and the channels slowest to accept their replies (p95 over the same 24 hours).
    Cached ADMIN_DASHBOARD_CACHE_S per process."""
    if now is not None:
        return _dashboard(now)
    return _dashboard_cache.get_or_load("dashboard", lambda: _dashboard(timezone.now()))
