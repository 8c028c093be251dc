"""What the servers say: Retry-After, retry-after-ms and the x-ratelimit-* headers, read as
how long a provider is blocked."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from channels_app.outgoing_http import retry_after_s
from llm.pacing.limits import BLOCK_DEFAULT_S

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def duration_s(text: str | None) -> float | None:
    """`x-ratelimit-reset-*` values: "1s", "6m0s", "20ms", "0.5s", "1h2m", or plain seconds."""
    text = (text or "").strip().lower()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    total, position = 0.0, 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            return None
        value, unit = float(match.group(1)), match.group(2)
        total += value * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[unit]
        position = match.end()
    return total if position == len(text) and position else None


def block_seconds(status: int | None, headers: Mapping[str, str]) -> float | None:
    """How long the server asks every process to send nothing; `headers` by lower-case name."""
    waits: list[float] = []
    for kind in ("requests", "tokens"):
        if (headers.get(f"x-ratelimit-remaining-{kind}") or "").strip() == "0":
            reset = duration_s(headers.get(f"x-ratelimit-reset-{kind}"))
            if reset is not None:
                # The reset is when the whole limit is back; one more call is allowed as soon as
                # one unit is (a minute over the limit), which a server pacing at its limit
                # keeps answering with "0 remaining": waiting for the whole reset would
                # leave the provider idle for it (measured: 6 s gaps at 600 requests/minute).
                limit = _positive_int(headers.get(f"x-ratelimit-limit-{kind}"))
                waits.append(min(reset, 60.0 / limit) if limit else reset)
    if status in (429, 503):
        retry_after = retry_after_s(headers, retry_after_ms=True)
        if retry_after is not None:
            waits.append(retry_after)
    if status == 429 and not waits:
        waits.append(BLOCK_DEFAULT_S)
    return max(waits) if waits else None


def _positive_int(text: str | None) -> int | None:
    try:
        value = int(str(text).strip())
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None
