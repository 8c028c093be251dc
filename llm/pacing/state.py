"""What one process knows of a provider it paces, and the calls waiting for its permits."""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from llm.pacing.limits import UNLIMITED_WINDOW, Limits, Permit


@dataclass(eq=False)
class Waiter:
    future: asyncio.Future[Permit]
    bot: str
    tokens: int
    ceiling: int
    enqueued: float


@dataclass(eq=False)
class ProviderState:
    key: str
    label: str
    limits: Limits
    queues: dict[str, deque[Waiter]] = field(default_factory=OrderedDict)
    waiting: int = 0
    in_flight: int = 0
    bot_in_flight: dict[str, int] = field(default_factory=dict)
    served: dict[str, int] = field(default_factory=dict)  # bot -> turn it was last served
    turn: int = 0
    window: float = float(UNLIMITED_WINDOW)
    last_decrease: float = -math.inf
    # What the shared document grants this process, and its share of the provider's slots
    # (the grant may be above it while calls beyond the share end).
    grant: int = 0
    share: int = 0
    pending_cap: int | None = None  # a lower grant being written
    synced: bool = False
    requests: float = 0.0  # request permits held (leased from the shared bucket)
    tokens: float = 0.0  # token permits held
    refund: float = 0.0  # estimated tokens not used (negative: used beyond the estimate)
    used_requests: int = 0  # not yet added to the shared usage counts
    used_tokens: int = 0
    blocked_until: float = 0.0  # time.time()
    block_to_share: bool = False
    processes: int = 1  # live processes seen at the last sync, this one included
    synced_at: float = -math.inf  # time.monotonic() of the last sync
    wants_sync: bool = False  # a waiting call needs what only a sync can give
    entry: bool = False  # this process has an entry in the shared document
    fallback_at: float = 0.0  # time.monotonic() the outage refill last ran
    wake: asyncio.TimerHandle | None = None
    active_at: float = field(default_factory=time.monotonic)

    def limit_window(self) -> int:
        return self.limits.max_concurrent or UNLIMITED_WINDOW
