"""Secret generation and checking. Secrets are never logged."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from typing import Any

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


# --- Signing secrets (Standard Webhooks): channels sign replies, bots verify inbound ---------

SIGNING_SECRET_PREFIX = "whsec_"  # noqa: S105 - the spec's public marker, not a secret
# Standard base64, not the URL-safe alphabet: the reference libraries decode the secret with
# plain b64decode, which silently drops `-` and `_` and would verify with a different key.
SIGNING_SECRET_BYTES = 32


def generate_signing_secret() -> str:
    return SIGNING_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SIGNING_SECRET_BYTES)).decode("ascii")


def signing_secrets_current(
    *, current: str, previous: str, previous_until: datetime | None, now: datetime
) -> list[str]:
    """The secrets in force: the current one and, during a rotation's overlap, the previous one."""
    result = [current] if current else []
    if previous and previous_until is not None and previous_until > now:
        result.append(previous)
    return result


def signing_secret_rotation(*, field: str, old: str, overlap_s: float, now: datetime) -> tuple[str, dict[str, Any]]:
    """A new secret for `field`, and the fields its rotation writes: with an overlap, the old
    secret stays in `previous_<field>` until `previous_<field>_until`."""
    new = generate_signing_secret()
    keep_old = bool(old) and overlap_s > 0
    return new, {
        field: new,
        f"previous_{field}": old if keep_old else "",
        f"previous_{field}_until": now + timedelta(seconds=overlap_s) if keep_old else None,
        "updated_at": now,
    }
