"""`manage.py llm_usage_rebuild [--days 30]`: recounts the bots' LLM usage per day (the bot
page's table) from the stored messages. The worker keeps these counts as it goes; run this
once after upgrading from a version that did not, or to repair them. It reads each day's
messages once: run it when the database is quiet."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from dialogues.store.usage import usage_rebuild


class Command(BaseCommand):
    help = "Recount each bot's LLM usage per day (replies, tokens, failures) from the stored messages."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=30, help="How many days back, today included (default 30).")

    def handle(self, *args: Any, **options: Any) -> None:
        written = usage_rebuild(days=max(1, options["days"]))
        self.stdout.write(f"Recounted {written} bot-day(s) of LLM usage over {options['days']} day(s).")
