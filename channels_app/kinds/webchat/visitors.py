"""A web chat visitor: a random id, signed by the server (salted per channel), kept by the
browser. Whoever holds the token continues that conversation; nobody can make one for another
visitor or reuse one on another channel. Used by the Django views and the stream process."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from django.core import signing

TOKEN_MAX_LENGTH = 400
_VISITOR_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


@dataclass(frozen=True)
class Visitor:
    id: str
    # Set only for the admin's "Open web chat" page: the origin of our own page, allowed for
    # this token only (the channel's allowed origins are the customer's site).
    try_origin: str = ""

    @property
    def chat_id(self) -> str:
        return f"web-{self.id}"


def _salt(channel_id: str) -> str:
    return f"webchat:{channel_id}"


def visitor_new() -> Visitor:
    return Visitor(id=secrets.token_urlsafe(16))


def visitor_token(channel_id: str, visitor: Visitor) -> str:
    payload: dict[str, str] = {"v": visitor.id}
    if visitor.try_origin:
        payload["o"] = visitor.try_origin
    return signing.dumps(payload, salt=_salt(channel_id), compress=False)


def visitor_from_token(channel_id: str, token: str | None) -> Visitor | None:
    """The visitor a token names on this channel, or None (missing, malformed, forged, or made
    for another channel)."""
    if not token or len(token) > TOKEN_MAX_LENGTH:
        return None
    try:
        payload = signing.loads(token, salt=_salt(channel_id))
    except signing.BadSignature:
        return None
    if not isinstance(payload, dict):
        return None
    visitor_id, origin = payload.get("v"), payload.get("o", "")
    if not isinstance(visitor_id, str) or not _VISITOR_ID.match(visitor_id) or not isinstance(origin, str):
        return None
    return Visitor(id=visitor_id, try_origin=origin)
