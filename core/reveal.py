"""Showing a new secret once in the admin, by POST/redirect/GET (as `chatbots.admin` does for
bot secrets): the POST that makes it puts it in the operator's session under a random one-time
key and redirects to a reveal page, whose first GET takes it out of the session. A reload (or
the back button) finds only what is not secret (ids, a title), so the page can say "already
shown"; it can neither show the secret again nor repeat the POST. The secret is never put into
a message or a log, and lives in the session only between the POST and the GET after it."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest

SESSION_PREFIX = "core.reveal:"
# A reveal not followed within MAX_AGE_S is dropped unseen; a session holds at most MAX_KEPT.
MAX_AGE_S = 600
MAX_KEPT = 10


class Revealed:
    """A plaintext secret on its way into a template. Its repr hides it: Django's template
    engine logs the whole context (with reprs) at DEBUG level when a variable is missing."""

    __slots__ = ("_value", "kind")

    def __init__(self, value: str, kind: str = "secret") -> None:
        self._value = value
        self.kind = kind  # what the secret is, for the page (e.g. a bot's secret or its signing secret)

    def __str__(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret hidden>"


@dataclass(frozen=True)
class Reveal:
    info: dict[str, Any]  # what is not secret: kept after the first GET
    secrets: list[Revealed] = field(default_factory=list)  # empty once shown, or too late


def reveal_put(request: HttpRequest, *, namespace: str, secrets_: list[str], info: dict[str, Any]) -> str:
    """Stores the secrets for one reveal; returns its one-time key (for the reveal page's URL).
    `info` must be JSON-serialisable (the session's serializer)."""
    key = secrets.token_urlsafe(16)
    session = request.session
    session[f"{SESSION_PREFIX}{namespace}:{key}"] = {"info": info, "secrets": list(secrets_), "at": time.time()}
    kept = sorted((k for k in session.keys() if k.startswith(SESSION_PREFIX)), key=lambda k: session[k].get("at", 0))
    for stale in kept[:-MAX_KEPT]:
        del session[stale]
    return key


def reveal_take(request: HttpRequest, *, namespace: str, key: str) -> Reveal | None:
    """The reveal under `key`, with its secrets the first time only; None for an unknown key."""
    session_key = f"{SESSION_PREFIX}{namespace}:{key}"
    entry = request.session.get(session_key)
    if not isinstance(entry, dict):
        return None
    info = dict(entry.get("info") or {})
    plain = entry.get("secrets") or []
    fresh = time.time() - float(entry.get("at", 0)) <= MAX_AGE_S
    # Taken out before anything is rendered: whatever happens next, it is not shown twice.
    request.session[session_key] = {"info": info, "secrets": [], "at": entry.get("at", 0)}
    return Reveal(info=info, secrets=[Revealed(str(s)) for s in plain] if fresh else [])
