"""The web chat's options: the origins its widget may be embedded on, and its title."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

ORIGINS_MAX = 20
ORIGIN_MAX_LENGTH = 200
TITLE_MAX_LENGTH = 80
# Bounds of what a visitor sends and reads.
BODY_MAX_BYTES = 16 * 1024
TEXT_MAX_LENGTH = 4000
HISTORY_SIZE = 50


def origin_normalize(value: str) -> str:
    """`scheme://host[:port]`, lower-cased, the default port dropped (as browsers send `Origin`).
    Raises ValueError for anything else (a path, a query, credentials, another scheme)."""
    text = value.strip()
    if not text or len(text) > ORIGIN_MAX_LENGTH or any(ord(c) < 33 or ord(c) == 127 for c in text):
        raise ValueError("an origin is scheme://host[:port], e.g. https://shop.example.com")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r}: an origin is http(s)://host[:port]")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{text!r}: an origin has no path, query or user, only scheme://host[:port]")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{text!r}: the port is not a number from 1 to 65535") from None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    default = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def origins_clean(values: list[str]) -> list[str]:
    """The allowed origins, normalized, in order, without repeats: at least one, at most
    ORIGINS_MAX. Raises ValueError naming the first bad one."""
    cleaned: list[str] = []
    for value in values:
        origin = origin_normalize(value)
        if origin not in cleaned:
            cleaned.append(origin)
    if not cleaned:
        raise ValueError("at least one origin is required: the site the widget is embedded on")
    if len(cleaned) > ORIGINS_MAX:
        raise ValueError(f"at most {ORIGINS_MAX} origins")
    return cleaned


def channel_origins(options: dict[str, Any] | None) -> list[str]:
    origins = (options or {}).get("allowed_origins") or []
    return [str(origin) for origin in origins if isinstance(origin, str)]
