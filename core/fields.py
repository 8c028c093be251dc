"""`EncryptedCharField`: a secret stored encrypted (core.crypto), read back as plaintext.

The one place where stored secrets are decrypted: a model instance, a cached one included,
holds the plaintext, so every reader (the worker's delivery, the webhook's signature check,
the admin, the API) uses the instance's value and never decrypts on its own. Code that reads
the raw documents with pymongo must not read these fields.

Lookups compare the stored (encrypted) value: `filter(field="")` finds the documents without a
secret, `filter(field=<stored value>)` is a compare-and-set (`encrypted_compare_and_set`). A
plaintext never matches, since every encryption of it differs."""

from __future__ import annotations

import logging
from typing import Any

from django.apps import apps
from django.db import models
from django_mongodb_backend.fields import EmbeddedModelField
from pymongo.errors import PyMongoError

from core.crypto import secret_decrypt, secret_encrypt, stored_secret_sample
from core.mongo import mongo_collection

log = logging.getLogger(__name__)


class EncryptedCharField(models.CharField):
    # `max_length` bounds the plaintext (forms, validation); the stored value is longer.

    def to_python(self, value: Any) -> Any:
        # Also how an embedded model's fields are read from the database (EmbeddedModelField).
        value = super().to_python(value)
        if isinstance(value, str):
            return secret_decrypt(value)
        return value

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return self.to_python(value)

    def get_prep_value(self, value: Any) -> Any:
        # Not CharField's, which calls to_python: a lookup's value is compared as stored.
        return models.Field.get_prep_value(self, value)

    def get_db_prep_save(self, value: Any, connection: Any) -> Any:
        value = super().get_db_prep_save(value, connection)
        if isinstance(value, str) and value:
            return secret_encrypt(value)
        return value


def encrypted_paths(model: type[models.Model]) -> list[str]:
    """Where `model`'s documents hold encrypted secrets, dotted for embedded models' fields."""
    paths: list[str] = []
    for field in model._meta.concrete_fields:
        if isinstance(field, EncryptedCharField):
            paths.append(field.attname)
        elif isinstance(field, EmbeddedModelField):
            embedded = field.embedded_model
            paths.extend(
                f"{field.column}.{inner.column}"
                for inner in embedded._meta.concrete_fields
                if isinstance(inner, EncryptedCharField)
            )
    return paths


def encrypted_models() -> list[tuple[type[models.Model], list[str]]]:
    """Every model with encrypted secrets, and their paths."""
    found = []
    for model in apps.get_models():
        if model._meta.abstract or getattr(model._meta, "managed", True) is False:
            continue
        paths = encrypted_paths(model)
        if paths:
            found.append((model, paths))
    return found


def secrets_key_check() -> None:
    """At start-up: the keys decrypt one stored secret of each model that has any, or
    SecretsKeyError (ImproperlyConfigured, one line naming SECRETS_ENCRYPTION_KEYS) stops the
    process before it serves anything. A database that does not answer is left to the
    process's own handling of an outage (each secret is checked again when it is read)."""
    for model, paths in encrypted_models():
        try:
            sample = stored_secret_sample(mongo_collection(model._meta.db_table), paths)
        except PyMongoError as exc:
            log.warning("secrets key check skipped: the database did not answer (%s)", type(exc).__name__)
            return
        if sample is not None:
            secret_decrypt(sample)


def encrypted_compare_and_set(
    *, model: type[models.Model], pk: Any, field: str, expected: str, values: dict[str, Any]
) -> bool:
    """Writes `values` when `field` still holds the secret `expected`: the compare-and-set of a
    rotation, since an encrypted value cannot be matched by its plaintext. False when the
    secret changed meanwhile or the object is gone."""
    if field not in encrypted_paths(model):
        raise ValueError(f"{field} is not an encrypted field of {model.__name__}")
    found = mongo_collection(model._meta.db_table).find_one({"_id": pk}, {field: 1})
    if found is None:
        return False
    stored = found.get(field, "")
    if not isinstance(stored, str) or secret_decrypt(stored) != expected:
        return False
    return bool(model._default_manager.filter(pk=pk, **{field: stored}).update(**values))
