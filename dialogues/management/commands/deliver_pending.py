"""`manage.py deliver_pending [--loop --interval S] [--workers N] [--limit N]`

A single run is the operator's "deliver now": it generates the replies that were never
generated and tries every pending or failed reply once, now. `--loop` repeats every S seconds
and respects each reply's backoff (`next_attempt_at`). Any number of copies may run on any
number of hosts: every reply is claimed atomically before it is generated or POSTed.
"""

from __future__ import annotations

import logging
import signal
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError
from pymongo.errors import PyMongoError

from dialogues.delivery import PassCounts, pending_replies_deliver
from dialogues.services import awaiting_replies_generate

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Deliver pending or failed replies to their channels (and generate replies never generated)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--loop", action="store_true", help="Keep running; retry each reply with backoff.")
        parser.add_argument("--interval", type=float, default=5.0, help="Seconds between passes with --loop.")
        parser.add_argument("--limit", type=int, default=1000, help="Replies per pass (default 1000).")
        parser.add_argument(
            "--workers",
            type=int,
            default=8,
            help="Replies handled at once (default 8): a slow or unreachable channel holds one worker, not the pass.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        interval: float = max(0.1, options["interval"])
        limit: int = max(1, options["limit"])
        workers: int = max(1, options["workers"])
        if not options["loop"]:
            counts = self.run_pass(respect_schedule=False, limit=limit, workers=workers)
            self.stdout.write(self.describe(counts))
            return

        stopping = False

        def stop(*_: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write(f"deliver_pending: looping every {interval:g} s (Ctrl-C stops)")
        while not stopping:
            try:
                counts = self.run_pass(respect_schedule=True, limit=limit, workers=workers)
            except (DatabaseError, PyMongoError) as exc:
                # A service loop outlives a database outage: nothing is lost (the replies stay
                # in their state), and the next pass picks up where this one stopped.
                logger.warning("deliver_pending pass failed: %s; retrying in %g s", type(exc).__name__, interval)
            else:
                if any(vars(counts).values()):
                    self.stdout.write(self.describe(counts))
            deadline = time.monotonic() + interval
            while not stopping and time.monotonic() < deadline:
                time.sleep(min(0.2, interval))

    @staticmethod
    def run_pass(*, respect_schedule: bool, limit: int, workers: int = 1) -> PassCounts:
        # Undelivered replies first: replies generated below get their one attempt there, not
        # a second one in the same pass.
        counts = pending_replies_deliver(respect_schedule=respect_schedule, limit=limit, workers=workers)
        counts.merge(awaiting_replies_generate(limit=limit, workers=workers))
        return counts

    @staticmethod
    def describe(counts: PassCounts) -> str:
        return (
            f"generated {counts.generated}, delivered {counts.delivered}, failed {counts.failed}, "
            f"dead {counts.dead}, skipped {counts.skipped}, generation failed {counts.generation_failed}"
        )
