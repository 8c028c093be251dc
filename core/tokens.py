"""Secret generation and checking. Secrets are never logged."""

from __future__ import annotations

import hashlib
import hmac
import secrets

BOT_SECRET_PREFIX = "cbs_"  # noqa: S105 - a public marker, not a secret
DISPLAY_PREFIX_LENGTH = 10


def generate_bot_secret() -> str:
    # 256 bits of randomness; the prefix makes leaked secrets recognisable to scanners.
    return BOT_SECRET_PREFIX + secrets.token_urlsafe(32)


def generate_channel_token() -> str:
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def display_prefix(secret: str) -> str:
    return secret[:DISPLAY_PREFIX_LENGTH]


def secrets_match(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))
