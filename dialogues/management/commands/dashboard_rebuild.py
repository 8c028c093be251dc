"""`manage.py dashboard_rebuild [--hours 24]`: recounts the admin dashboard's hours (messages
in, replies delivered and how long they took per channel, failures) from the stored messages.
The webhook and the worker keep these counts as they go; run this once after upgrading from a
version that did not, or to repair them. It reads every message of those hours: run it when
the database is quiet."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from dialogues.store.activity import activity_rebuild


class Command(BaseCommand):
    help = "Recount the admin dashboard's last hours (messages in, replies delivered, failures) from the messages."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--hours", type=int, default=24, help="Hours back, this one included (default 24).")

    def handle(self, *args: Any, **options: Any) -> None:
        hours = max(1, options["hours"])
        active = activity_rebuild(hours=hours)
        self.stdout.write(f"Recounted {hours} hour(s) of activity from the messages; {active} had any.")
