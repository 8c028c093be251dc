"""Where a pass over a dialogue stops, and when work that failed is tried again."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from django.conf import settings

# A tenant whose slots are all taken: its dialogue goes back to the queue for this long.
SLOT_RETRY = timedelta(milliseconds=100)


def backoff(attempts: int, *, base_s: float, max_s: float, retry_after_s: float | None = None) -> timedelta:
    """Exponential, with jitter so failures do not retry in lockstep; a channel's or LLM's
    Retry-After is honoured up to CHANNEL_RETRY_AFTER_CAP_S."""
    seconds = min(max_s, base_s * 2 ** max(0, attempts - 1)) * random.uniform(0.8, 1.2)  # noqa: S311 - jitter
    if retry_after_s is not None:
        seconds = max(seconds, min(retry_after_s, settings.CHANNEL_RETRY_AFTER_CAP_S))
    return timedelta(seconds=seconds)


class StepKind(StrEnum):
    SETTLED = "settled"  # nothing owed
    WAIT = "wait"  # until `until`
    PARK = "park"  # the channel cannot take anything (`reason`)
    LOST = "lost"  # the claim
    REREAD = "reread"  # the dialogue changed under us: read it again


@dataclass
class Step:
    """Where a pass over the dialogue stopped."""

    kind: StepKind
    until: datetime | None = None
    reason: str = ""
    # A wait of a moment (a tenant's slots taken, a breaker's probe in flight, an insert on
    # its way), not a retry's backoff: `deliver_pending` waits for these.
    bounce: bool = False


class Stop(Exception):
    """Raised wherever a pass has to stop, carrying where; caught in `_work`."""

    def __init__(self, step: Step) -> None:
        super().__init__(step.kind)
        self.step = step


def wait_stop(until: datetime, *, bounce: bool = False) -> Stop:
    return Stop(Step(StepKind.WAIT, until=until, bounce=bounce))
