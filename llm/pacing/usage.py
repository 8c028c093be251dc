"""A provider's current use, for its page in the admin and the API."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from llm.pacing.limits import COLLECTION


def pacing_usage(provider: str, *, now: float | None = None) -> dict[str, Any]:
    """The provider's current use, from every process: calls in flight, requests and tokens in
    the last minute (counted in 10-second steps: 60 to 70 s), the limits the processes pace
    by, and until when the servers' answers block it (None: not blocked)."""
    from core.mongo import mongo_collection

    now = time.time() if now is None else now
    document = mongo_collection(COLLECTION).find_one({"_id": provider}) or {}
    live = [
        entry
        for entry in (document.get("procs") or {}).values()
        if isinstance(entry, dict) and float(entry.get("until", 0)) > now
    ]
    steps = [
        counts for step, counts in (document.get("usage") or {}).items() if step.isdigit() and int(step) > now - 70
    ]
    limits = document.get("limits") or {}
    blocked = float(document.get("blocked_until", 0.0))
    return {
        "calls_in_flight": sum(int(entry.get("inflight", 0)) for entry in live),
        "processes": len(live),
        "requests_last_minute": sum(int(counts[0]) for counts in steps),
        "tokens_last_minute": sum(int(counts[1]) for counts in steps),
        "limits": {
            "max_concurrent": limits.get("c"),
            "requests_per_minute": limits.get("r"),
            "tokens_per_minute": limits.get("t"),
        },
        "blocked_until": datetime.fromtimestamp(blocked, tz=UTC) if blocked > now else None,
    }
