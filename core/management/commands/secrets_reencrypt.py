"""`manage.py secrets_reencrypt`: every stored secret encrypted with the first key of
SECRETS_ENCRYPTION_KEYS (and any still stored as it is, encrypted). The step of a key rotation
between "new key first, old key second" and "old key dropped" (docs/operations.md, "Encryption keys")."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from core.crypto import SecretsKeyError, secret_reencrypt, stored_secrets_rewrite
from core.fields import encrypted_models
from core.mongo import mongo_collection


class Command(BaseCommand):
    help = "Re-encrypt every stored secret with the first key of SECRETS_ENCRYPTION_KEYS."

    def handle(self, *args: Any, **options: Any) -> None:
        total = 0
        for model, paths in encrypted_models():
            try:
                changed = stored_secrets_rewrite(mongo_collection(model._meta.db_table), paths, secret_reencrypt)
            except SecretsKeyError as exc:
                raise CommandError(str(exc)) from None
            total += changed
            self.stdout.write(f"{model._meta.label}: {changed} re-encrypted")
        self.stdout.write(f"secrets_reencrypt: {total} documents re-encrypted with the first key")
