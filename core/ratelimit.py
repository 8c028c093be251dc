"""Fixed-window rate limits kept in MongoDB, so every process and host shares them (no Redis).

One document per (key, window): `{"key", "window", "n", "expires_at"}`, unique on (key, window)
and TTL-indexed on `expires_at` (`core.models.RateCounter`). A hit is one `update_one` with
`$inc` and `upsert=True`, then one indexed read of the count (no `find_one_and_update`: see
docs/internals.md, "Known quirks"). A fixed window lets a client make up to twice
the limit across a window boundary; for brute-force limits that is plenty.

Rates are written as DRF writes them: `"<n>/<period>"`, period `s`, `m`, `h` or `d` (or
`second`, `minute`, ...), optionally with a count: `"5/15m"`. Blank or `"0"`: no limit.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from pymongo.errors import DuplicateKeyError

from core.caching import LookupCache

if TYPE_CHECKING:
    from django.http import HttpRequest

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*$")


@dataclass(frozen=True)
class Rate:
    limit: int
    window_s: int


@dataclass(frozen=True)
class Usage:
    count: int  # hits in the current window, this one included
    limit: int
    retry_after_s: int  # until the window ends

    @property
    def exceeded(self) -> bool:
        return self.count > self.limit


def parse_rate(text: str | None) -> Rate | None:
    """`"20/minute"` -> Rate(20, 60); blank or a zero limit -> None (no limit)."""
    if text is None or not text.strip() or text.strip() == "0":
        return None
    match = _RATE.match(text.lower())
    if match is None or match.group(3)[0] not in _PERIODS:
        raise ValueError(f"not a rate: {text!r} (expected e.g. '20/minute' or '5/15m')")
    limit, count, unit = int(match.group(1)), int(match.group(2) or 1), match.group(3)[0]
    if limit == 0:
        return None
    if count < 1:
        raise ValueError(f"not a rate: {text!r} (the period must be at least 1)")
    return Rate(limit=limit, window_s=count * _PERIODS[unit])


def rate_key(scope: str, *parts: str) -> str:
    """The counter's key: the scope in clear (for operators), who in a hash (no addresses or
    user names stored, and a bounded length whatever the client sent)."""
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return f"{scope}:{digest}"


def _window(rate: Rate, now: float) -> tuple[int, int]:
    start = int(now // rate.window_s) * rate.window_s
    return start, max(1, math.ceil(start + rate.window_s - now))


def _collection() -> Any:
    # Imported here: settings import this module (to check the rates) before apps are ready.
    from core.models import RateCounter
    from core.mongo import mongo_collection

    return mongo_collection(RateCounter._meta.db_table)


def rate_hit(key: str, rate: Rate, *, now: float | None = None) -> Usage:
    """Counts one hit against `key` in the current window and returns the window's usage."""
    now = time.time() if now is None else now
    _start, retry_after = _window(rate, now)
    return Usage(count=_counter_add(key, rate, 1, now), limit=rate.limit, retry_after_s=retry_after)


def _counter_add(key: str, rate: Rate, amount: int, now: float) -> int:
    """Adds `amount` to `key`'s counter of the current window; returns the count after."""
    start, _retry_after = _window(rate, now)
    where = {"key": key, "window": start}
    # Kept one window past its end, so a read at the boundary still finds it.
    update = {
        "$inc": {"n": amount},
        "$setOnInsert": {"expires_at": datetime.fromtimestamp(start + 2 * rate.window_s, tz=UTC)},
    }
    collection = _collection()
    try:
        collection.update_one(where, update, upsert=True)
    except DuplicateKeyError:
        # Two first hits at the same moment both tried to insert; the loser's retry updates
        # the document the winner inserted.
        collection.update_one(where, update, upsert=True)
    document = collection.find_one(where, {"n": 1, "_id": 0})
    return int(document["n"]) if document else amount


def rate_peek(key: str, rate: Rate, *, now: float | None = None) -> Usage:
    """The current window's usage, without counting a hit."""
    now = time.time() if now is None else now
    start, retry_after = _window(rate, now)
    document = _collection().find_one({"key": key, "window": start}, {"n": 1, "_id": 0})
    return Usage(count=int(document["n"]) if document else 0, limit=rate.limit, retry_after_s=retry_after)


def client_address(request: HttpRequest) -> str:
    """The client's address: `REMOTE_ADDR`, or, behind a proxy that sets it on every request,
    the header RATE_LIMIT_CLIENT_IP_HEADER names (e.g. `X-Real-IP`). A header a client could
    send itself must not be named here: it would pick its own counter."""
    header = settings.RATE_LIMIT_CLIENT_IP_HEADER
    if header:
        value = request.META.get("HTTP_" + header.upper().replace("-", "_"), "")
        # X-Forwarded-For style lists: the proxy appends the address it saw last.
        value = value.split(",")[-1].strip()
        if value:
            return value[:100]
    return str(request.META.get("REMOTE_ADDR", ""))[:100]


# --- Failed webhook authentications, per client address ---------------------------------

# The last count read for each address's window, per process, for AUTH_CACHE_TTL_S: a channel
# sending steadily costs one counter read per second per process, not one per request. Each
# failure refreshes it from its own hit, so an attacker is refused as soon as its process sees
# the count cross the limit; another process sees it within the TTL.
_failure_counts = LookupCache()


def _webhook_failure_rate() -> Rate | None:
    return parse_rate(settings.WEBHOOK_AUTH_FAILURE_RATE)


def webhook_auth_guard(request: HttpRequest) -> str:
    """Refuses (429, `Retry-After`) a client whose address failed webhook authentication too
    often in this window, before its secret is hashed or looked up. Returns the key that
    `webhook_auth_failed` counts against."""
    key = rate_key("webhook-auth-fail", client_address(request))
    rate = _webhook_failure_rate()
    if rate is not None:
        now = time.time()
        start, retry_after = _window(rate, now)
        count = _failure_counts.get_or_load((key, start), lambda: rate_peek(key, rate, now=now).count)
        if count >= rate.limit:
            from rest_framework.exceptions import Throttled  # see _collection

            raise Throttled(wait=retry_after, detail="Too many failed authentications from this address")
    return key


def webhook_auth_failed(key: str) -> None:
    rate = _webhook_failure_rate()
    if rate is not None:
        now = time.time()
        usage = rate_hit(key, rate, now=now)
        _failure_counts.set((key, _window(rate, now)[0]), usage.count)


# --- Webhook requests per bot, leased in batches ----------------------------------------
#
# The webhook is the hot path, so a request must not cost a database round trip. Each process
# leases permits from the bot's shared window counter in batches: one `$inc` of N (and one
# indexed read) takes up to N permits, and the next N-1 requests are served from the local
# lease. Accuracy: the cluster never admits more than the limit in a window (a lease is granted
# only from what the shared count leaves); it may refuse a little early, by at most the permits
# other processes hold unused, (processes - 1) * (N - 1). N is a twentieth of the limit
# (at most WEBHOOK_BOT_RATE_LEASE_MAX), so each process holds at most 5% of a window's permits.
# Once the shared count is spent, the process refuses the bot without asking again until the
# window ends.

WEBHOOK_BOT_RATE_LEASE_MAX = 1000


@dataclass
class _Lease:
    window: int
    left: int  # permits still to serve locally; 0 with `spent`: refused until the window ends
    spent: bool = False


_leases: dict[str, _Lease] = {}
_leases_lock = threading.Lock()


def webhook_bot_leases_clear() -> None:
    """Forgets this process's leases (tests; a new process starts without any)."""
    with _leases_lock:
        _leases.clear()


def lease_size(rate: Rate) -> int:
    return max(1, min(WEBHOOK_BOT_RATE_LEASE_MAX, rate.limit // 20))


def _lease_take(key: str, rate: Rate, want: int, now: float) -> int:
    """Takes up to `want` permits from the shared window counter; returns how many it got."""
    after = _counter_add(key, rate, want, now)
    # What was left before this take, capped by what was asked for; permits asked beyond the
    # limit are simply never granted (the count may run past the limit, harmlessly).
    return max(0, min(want, rate.limit - (after - want)))


def webhook_bot_rate_check(bot_id: str, *, now: float | None = None) -> None:
    """Counts one webhook request for the bot against WEBHOOK_BOT_RATE; over it, raises DRF's
    Throttled (429 with `Retry-After`, until the window ends)."""
    rate = parse_rate(settings.WEBHOOK_BOT_RATE)
    if rate is None:
        return
    now = time.time() if now is None else now
    start, retry_after = _window(rate, now)
    key = rate_key("webhook-bot", bot_id)
    with _leases_lock:
        lease = _leases.get(key)
        if lease is not None and lease.window == start:
            if lease.left > 0:
                lease.left -= 1
                return
            if lease.spent:
                _throttled(retry_after)
    # Outside the lock: a database round trip must not hold up the other bots' requests. Two
    # threads of one process may both take a lease at a window's start; their permits add up.
    granted = _lease_take(key, rate, lease_size(rate), now)
    with _leases_lock:
        lease = _leases.get(key)
        if lease is None or lease.window != start:
            if len(_leases) > 10_000:  # bots seen in old windows
                for stale in [k for k, v in _leases.items() if v.window != start]:
                    del _leases[stale]
            lease = _leases[key] = _Lease(window=start, left=0)
        if granted == 0:
            lease.spent = True
            lease.left = 0
        else:
            lease.left += granted - 1
            return
    _throttled(retry_after)


def _throttled(retry_after: int) -> None:
    from rest_framework.exceptions import Throttled  # see _collection

    raise Throttled(wait=retry_after, detail="Too many webhook requests for this bot.")
