"""The reply pipeline in numbers, for the admin's dashboard and the Deliveries screen: the
backlog by state, the open breakers, the last 24 hours by the hour, the channels slowest to
accept their replies. Each message count is an equality on the first field of an index
(delivery_state or reply_state); the hours are 24 counter documents written as the work
happens (`dialogues.store.activity`); the open breakers are a read of the channels (a small collection). Cached per
process (ADMIN_DASHBOARD_CACHE_S), so a reloading operator cannot load the database."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
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
from dialogues.selectors import newest_in_slices
from dialogues.store.activity import DELIVERY_BUCKETS_S, HourCounts, activity_hours, hour_start

_dashboard_cache = LookupCache(maxsize=16, ttl_s=lambda: settings.ADMIN_DASHBOARD_CACHE_S)
DASHBOARD_HOURS = 24
SLOWEST_CHANNELS = 5
# The admin's counts stop at this many: past it they show "100+", so a page costs the same
# however large a backlog grows (each count reads at most this many index entries).
COUNT_CAP = 100


def _newest(field: str, value: str, *, cap: int, now: datetime, projection: dict[str, Any]) -> list[dict[str, Any]]:
    """Up to `cap` of the newest messages whose `field` is `value`, read on the (field,
    created_at) index in disjoint slices of created_at walking back from now
    (`dialogues.selectors.next_slice_width`): all of them when there are fewer. The embedded
    server reads every match of a query before it applies a limit, so an unbounded equality
    would cost the whole backlog, and a window re-read wider at each step cost it again."""
    collection = mongo_collection(Message._meta.db_table)

    def read(when: dict[str, Any], wanted: int) -> list[dict[str, Any]]:
        return list(collection.find({field: value, "created_at": when}, projection).limit(wanted))

    return newest_in_slices(now, read, cap, bounded=False)


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
    failures: int  # delivery attempts that failed, customer messages the LLM gave up on


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
    current = hour_start(now)
    since = current - timedelta(hours=DASHBOARD_HOURS - 1)
    counted = activity_hours(start=since, end=current + timedelta(hours=1))
    hours = [current - timedelta(hours=back) for back in range(DASHBOARD_HOURS - 1, -1, -1)]
    delivery: dict[ObjectId, Counter[int]] = {}
    for counts in counted.values():
        for channel, buckets in counts.delivery.items():
            delivery.setdefault(channel, Counter()).update(buckets)
    empty = HourCounts()
    return Dashboard(
        hours=[
            HourActivity(
                hour=hour,
                messages_in=counted.get(hour, empty).messages_in,
                delivered=counted.get(hour, empty).delivered,
                failures=counted.get(hour, empty).failures,
            )
            for hour in hours
        ],
        backlog=backlog_counts(cap=COUNT_CAP, now=now),
        open_breakers=open_breakers(),
        slowest_channels=_slowest(delivery, limit=SLOWEST_CHANNELS),
    )


def dashboard_summary(*, now: datetime | None = None) -> Dashboard:
    """The admin index's numbers: the last 24 hours by the hour (UTC), the backlog, the open
    breakers and the channels slowest to accept their replies (p95 over the same 24 hours).
    Cached ADMIN_DASHBOARD_CACHE_S per process."""
    if now is not None:
        return _dashboard(now)
    return _dashboard_cache.get_or_load("dashboard", lambda: _dashboard(timezone.now()))
