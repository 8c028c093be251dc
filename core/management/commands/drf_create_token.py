"""`manage.py drf_create_token <username>`: DRF's command, against hashed keys. It prints the
new key once, in DRF's words (`Generated token <key> for user <username>`); only its hash is
kept."""

from __future__ import annotations

from argparse import ArgumentTypeError
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from core.api_tokens import api_token_create, api_tokens_revoke_for_user

MAX_EXPIRES_IN_DAYS = 36_500


def _days(value: str) -> int:
    try:
        days = int(value)
    except ValueError:
        raise ArgumentTypeError(f"a whole number of days, not {value!r}") from None
    if not 1 <= days <= MAX_EXPIRES_IN_DAYS:
        raise ArgumentTypeError(f"between 1 and {MAX_EXPIRES_IN_DAYS} days, not {days}")
    return days


class Command(BaseCommand):
    help = "Create an API token for a user and print its key (shown this once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", type=str)
        parser.add_argument(
            "-r",
            "--reset",
            action="store_true",
            dest="reset_token",
            default=False,
            help="Revoke the user's existing tokens first.",
        )
        parser.add_argument(
            "--expires-in-days", type=_days, default=None, metavar="N", help="The token stops working after N days."
        )
        parser.add_argument("--name", default="drf_create_token", help="What the token is for (shown in the admin).")

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["username"]
        user_model: Any = get_user_model()
        try:
            user = user_model._default_manager.get_by_natural_key(username)
        except user_model.DoesNotExist:
            raise CommandError(f"Cannot create the Token: user {username} does not exist") from None
        if options["reset_token"]:
            api_tokens_revoke_for_user(user=user)
        days = options["expires_in_days"]
        expires_at = timezone.now() + timedelta(days=days) if days else None
        _token, key = api_token_create(user=user, name=options["name"][:100], expires_at=expires_at)
        self.stdout.write(f"Generated token {key} for user {username}")
