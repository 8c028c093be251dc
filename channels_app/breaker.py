"""The channel's circuit breaker. It lives in the channel's document, shared by every worker
on every host: after WORKER_BREAKER_THRESHOLD failed attempts in a row nothing is sent to the
channel until `breaker_open_until`; then one probe (won by an atomic update) decides whether
it closes. The worker asks before each attempt and records each outcome here; an operator
closes it through `channels_app.services.channel_breaker_close`.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from django.conf import settings
from django.utils import timezone
from pymongo.collection import Collection

from channels_app.models import Channel
from core.caching import LookupCache
from core.datetimes import aware
from core.mongo import mongo_collection

logger = logging.getLogger("channels_app.breaker")

BREAKER_COOLDOWN_MAX_S = 600.0
PROBE_WAIT = timedelta(seconds=1)
# The fields that say the breaker is closed.
CLOSED = {"consecutive_failures": 0, "breaker_open_until": None}


def channels_collection() -> Collection[dict[str, Any]]:
    return mongo_collection(Channel._meta.db_table)


# Breakers this process opened, known before its cached copy of the channel shows them (for
# as long as that copy may be stale).
_opened = LookupCache(maxsize=10_000)
# Channels whose last attempt from this process failed: their breaker is closed in the
# database after a success even when the cached copy of the channel shows no failures.
_failing: set[ObjectId] = set()
_failing_lock = threading.Lock()


def breaker_wait_until(channel: Channel) -> datetime | None:
    """When the channel's breaker is open, the time its probe is due; None when closed.

    A cached copy of the channel that shows it open is checked against the database: an
    operator may have closed it (or a test message gone through) since the copy was read, and
    waiting on a stale copy would hold the channel's replies until the old reopening time."""
    now = timezone.now()
    opened_here = _opened.get(channel.pk)
    if opened_here is not None and opened_here > now:
        return opened_here
    until = channel.breaker_open_until
    if until is None or channel.consecutive_failures < settings.WORKER_BREAKER_THRESHOLD:
        return None
    if aware(until) <= now:
        return until  # its probe is due: `breaker_probe_claim` reads the database anyway
    current = (
        channels_collection().find_one({"_id": channel.pk}, {"breaker_open_until": 1, "consecutive_failures": 1}) or {}
    )
    until = current.get("breaker_open_until")
    if until is None or int(current.get("consecutive_failures") or 0) < settings.WORKER_BREAKER_THRESHOLD:
        return None
    return until


def _forget(channel_id: ObjectId) -> bool:
    """This process forgets the channel was failing. Returns whether it was."""
    with _failing_lock:
        was_failing = channel_id in _failing
        _failing.discard(channel_id)
        _opened.discard(channel_id)
    return was_failing


def breaker_closed(channel_id: ObjectId) -> None:
    """The channel is known to take replies again (a test message went through): its breaker
    is closed and this process forgets it was failing."""
    _forget(channel_id)
    channels_collection().update_one({"_id": channel_id}, {"$set": CLOSED})


def breaker_probe_claim(channel: Channel) -> datetime | None:
    """An open breaker whose time is up lets one attempt through, to whoever wins this update.
    None when the caller may send (it won the probe, or the breaker has closed meanwhile);
    otherwise when to look again."""
    now = timezone.now()
    hold = now + timedelta(seconds=settings.CHANNEL_ATTEMPT_TIMEOUT_S + 5)
    channels = channels_collection()
    won = channels.update_one(
        {"_id": channel.pk, "breaker_open_until": {"$lte": now}}, {"$set": {"breaker_open_until": hold}}
    )
    if won.modified_count == 1:
        return None
    current = channels.find_one({"_id": channel.pk}, {"breaker_open_until": 1, "consecutive_failures": 1})
    if current is None or current.get("breaker_open_until") is None:
        return None  # closed by another worker's successful probe
    # Another worker's probe is in flight: look again shortly, not at the end of its hold.
    return now + PROBE_WAIT


def breaker_record(channel: Channel, *, ok: bool) -> bool:
    """Counts a failed attempt (opening the breaker at the threshold, for longer each time it
    reopens) or closes the breaker after a success. True when this success ended a run of
    failures (the channel's waiting dialogues can go now)."""
    if ok:
        was_failing = _forget(channel.pk)
        if was_failing or channel.consecutive_failures or channel.breaker_open_until:
            closed = channels_collection().update_one(
                {"_id": channel.pk, "consecutive_failures": {"$gt": 0}}, {"$set": CLOSED}
            )
            return closed.modified_count == 1
        return False
    with _failing_lock:
        _failing.add(channel.pk)
    channels = channels_collection()
    channels.update_one({"_id": channel.pk}, {"$inc": {"consecutive_failures": 1}})
    doc = channels.find_one({"_id": channel.pk}, {"consecutive_failures": 1})
    failures = int((doc or {}).get("consecutive_failures") or 0)
    threshold = settings.WORKER_BREAKER_THRESHOLD
    if failures >= threshold:
        cooldown = min(BREAKER_COOLDOWN_MAX_S, settings.WORKER_BREAKER_COOLDOWN_S * 2 ** min(failures - threshold, 10))
        until = timezone.now() + timedelta(seconds=cooldown)
        channels.update_one({"_id": channel.pk}, {"$set": {"breaker_open_until": until}})
        _opened.set(channel.pk, until)
        logger.warning(
            "channel breaker open",
            extra={"channel": str(channel.pk), "failures": failures, "cooldown_s": round(cooldown, 1)},
        )
    return False


def breakers_probe_now() -> int:
    """Every open breaker lets its probe through now (`deliver_pending`'s "now")."""
    now = timezone.now()
    result = channels_collection().update_many(
        {"breaker_open_until": {"$gt": now}}, {"$set": {"breaker_open_until": now}}
    )
    return int(result.modified_count)
