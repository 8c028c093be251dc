"""`manage.py dialogue_counters_recount`: sets each bot's count of dialogues opened through
`channel_id` (checked against WEBHOOK_MAX_DIALOGUES_PER_BOT) to the dialogues that exist.

Deleting a channel deletes its dialogues but leaves them counted, so a bot near its limit
may be refused new dialogues it would have room for: run this after deleting channels (while
the webhook is quiet, see `dialogues.store.counters.dialogue_counters_recount`)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from dialogues.store.counters import dialogue_counters_recount


class Command(BaseCommand):
    help = "Recount each bot's dialogues opened through channel_id (its WEBHOOK_MAX_DIALOGUES_PER_BOT count)."

    def handle(self, *args: Any, **options: Any) -> None:
        bots = dialogue_counters_recount()
        self.stdout.write(f"Recounted the dialogues of {bots} bot(s).")
