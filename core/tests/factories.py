from __future__ import annotations

from datetime import datetime
from typing import Any

from core.api_tokens import api_token_create


def api_token_key(user: Any, *, name: str = "test", expires_at: datetime | None = None) -> str:
    """A new API token for `user`: its key in plaintext, for `Authorization: Token <key>`."""
    _token, key = api_token_create(user=user, name=name, expires_at=expires_at)
    return key
