"""`manage.py deliver_pending`: "deliver now", one pass.

Everything waiting for a retry becomes due at once (replies to deliver, replies the LLM has
not produced yet, parked dialogues whose channel is active again), and a worker works until
nothing is due, then exits. The always-on worker (`run_worker`, started by `make run`) does
the same continuously; this command is for an operator who does not want to wait for a
backoff. `--loop` is kept for older deployments: it runs the always-on worker.
"""

from __future__ import annotations

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from dialogues.store.recovery import due_later_make_now
from worker.loop import Worker


class Command(BaseCommand):
    help = "Deliver every owed reply now, once (the always-on worker is `run_worker`)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--loop", action="store_true", help="Run the always-on worker instead (run_worker).")
        parser.add_argument("--workers", type=int, default=None, help="Dialogues worked on at once.")
        parser.add_argument("--timeout", type=float, default=300.0, help="Give up after this many seconds.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["loop"]:
            call_command("run_worker", threads=options["workers"])
            return
        made_due = due_later_make_now()
        worker = Worker(threads=options["workers"])
        try:
            # What had to wait a moment (a channel's share was taken, a breaker's probe went
            # first) is finished too; retries' backoffs are not waited for.
            worker.drain(timeout_s=options["timeout"], patient=True)
        finally:
            worker.close()
        self.stdout.write(
            f"made {made_due} waiting dialogue(s) due; worked on {worker.counts['dialogues']} dialogue(s), "
            f"{worker.counts['errors']} error(s)"
        )
