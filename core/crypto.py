"""Secrets we must use ourselves, and so cannot hash (channel tokens, signing secrets, LLM
provider keys), are stored encrypted: Fernet (AES-128-CBC with HMAC-SHA256, from
`cryptography`) under the keys of SECRETS_ENCRYPTION_KEYS.

The variable holds comma-separated Fernet keys. The first encrypts; every one of them
decrypts (`MultiFernet`), so a key is rotated by putting the new one first and keeping the old
one second, running `manage.py secrets_reencrypt`, then dropping the old one.

A stored value is `fernet:<token>`; the prefix tells it from a value stored before encryption
(which reads as it is, until the migration or `secrets_reencrypt` encrypts it). Neither a
secret nor its ciphertext ever appears in an error text."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

VARIABLE = "SECRETS_ENCRYPTION_KEYS"
PREFIX = "fernet:"
KEY_HELP = (
    "comma-separated Fernet keys (44 characters each; make one with "
    '`python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`)'
)


class SecretsKeyError(ImproperlyConfigured):
    """The keys cannot decrypt a stored secret. The message names the variable, never a value."""


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


def parse_keys(value: str) -> list[str]:
    """The keys of SECRETS_ENCRYPTION_KEYS, each checked. Raises ImproperlyConfigured."""
    keys = [key.strip() for key in value.split(",") if key.strip()]
    if not keys:
        raise ImproperlyConfigured(f"{VARIABLE} must be set: {KEY_HELP}")
    for number, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ImproperlyConfigured(f"{VARIABLE} must hold {KEY_HELP}; key {number} is not one") from None
    return keys


@functools.lru_cache(maxsize=8)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def _keys() -> tuple[str, ...]:
    return tuple(settings.SECRETS_ENCRYPTION_KEYS)


def is_encrypted(stored: str) -> bool:
    return stored.startswith(PREFIX)


def secret_encrypt(plaintext: str) -> str:
    """The stored form of a secret. An empty value (no secret) stays empty."""
    if not plaintext:
        return plaintext
    return PREFIX + _fernet(_keys()).encrypt(plaintext.encode("utf-8")).decode("ascii")


def secret_decrypt(stored: str) -> str:
    """The secret a stored value holds. Raises SecretsKeyError when no key decrypts it."""
    if not is_encrypted(stored):
        return stored
    try:
        return _fernet(_keys()).decrypt(stored[len(PREFIX) :].encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError):
        raise SecretsKeyError(
            f"{VARIABLE} cannot decrypt the stored secrets: none of its keys is the one they were "
            "encrypted with (after a rotation keep the old key, second, until `manage.py "
            "secrets_reencrypt` has run)"
        ) from None


def secret_reencrypt(stored: str) -> str | None:
    """`stored` encrypted with the first key, or None when it already is."""
    if not stored:
        return None
    if is_encrypted(stored):
        token = stored[len(PREFIX) :].encode("ascii")
        try:
            Fernet(_keys()[0]).decrypt(token)
            return None
        except InvalidToken:
            pass
    return secret_encrypt(secret_decrypt(stored))


def secret_encrypt_stored(stored: str) -> str | None:
    """`stored` encrypted, or None when it already is (or is empty): the migrations' rule."""
    if not stored or is_encrypted(stored):
        return None
    return secret_encrypt(stored)


def _get(document: dict[str, Any], path: str) -> Any:
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def stored_secrets_rewrite(collection: Any, paths: Iterable[str], rewrite: Callable[[str], str | None]) -> int:
    """Rewrites the secrets at `paths` (dotted for embedded documents) of every document of a
    raw pymongo collection with `rewrite`, each document by a compare-and-set on the values it
    read (a value rotated meanwhile is left to its writer). Returns the documents changed."""
    paths = list(paths)
    changed = 0
    for document in collection.find({"$or": [{path: {"$type": "string", "$ne": ""}} for path in paths]}):
        match: dict[str, Any] = {"_id": document["_id"]}
        values: dict[str, str] = {}
        for path in paths:
            stored = _get(document, path)
            if not isinstance(stored, str):
                continue
            new = rewrite(stored)
            if new is not None:
                match[path] = stored
                values[path] = new
        if values and collection.update_one(match, {"$set": values}).modified_count:
            changed += 1
    return changed


def stored_secret_sample(collection: Any, paths: Iterable[str]) -> str | None:
    """One encrypted value stored at one of `paths`, if there is any."""
    for path in paths:
        found = collection.find_one({path: {"$gte": PREFIX, "$lt": PREFIX[:-1] + ";"}}, {path: 1})
        value = _get(found, path) if found else None
        if isinstance(value, str) and is_encrypted(value):
            return value
    return None
