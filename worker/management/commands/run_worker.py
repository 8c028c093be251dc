"""`manage.py run_worker`: the always-on worker that generates and delivers replies.

Run as many copies as you like, on as many hosts: every dialogue is claimed atomically, so
each is worked on by one of them at a time. SIGTERM or Ctrl-C stops claiming and lets the
dialogues in hand finish (up to 10 s); whatever is left is picked up again by any worker
once its lease expires.
"""

from __future__ import annotations

import signal
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.fields import secrets_key_check
from worker.loop import Worker


class Command(BaseCommand):
    help = "Generate and deliver replies, continuously (the worker)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--threads", type=int, default=None, help="Dialogues worked on at once (WORKER_THREADS).")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            secrets_key_check()  # a wrong SECRETS_ENCRYPTION_KEYS stops start-up, not each delivery
        except ImproperlyConfigured as exc:
            raise CommandError(f"configuration error: {exc}") from None
        worker = Worker(threads=options["threads"])

        def stop(*_: object) -> None:
            worker.stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        wake = f", woken through {settings.WORKER_WAKE_DIR}" if settings.WORKER_WAKE_DIR else ""
        self.stdout.write(f"worker {worker.name}: {worker.threads} threads, looking for work every "
                          f"{worker.poll_s * 1000:g} ms, up to {worker.idle_poll_s * 1000:g} ms when idle{wake} "
                          f"(Ctrl-C stops)")  # fmt: skip
        self.stdout.flush()
        worker.run()
        worker.stop()
        self.stdout.write(f"worker {worker.name}: stopped")
