"""The delivery results the dispatcher stores (`TransportError` messages, a test message's
"HTTP 200 in 7 ms") are kept in English, as logs and the API return them; the admin shows them
in the operator's language, translated here when they are displayed."""

from __future__ import annotations

import re
from collections.abc import Callable

from django.utils.translation import gettext

from channels_app.dispatch import NON_PUBLIC

_NUMBER = r"(\d+(?:\.\d+)?(?:e[+-]?\d+)?)"
_PATTERNS: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (
        re.compile(r"Received status code (\d+) \(redirects are not followed\)"),
        lambda m: gettext("Received status code %(status)s (redirects are not followed)") % {"status": m[1]},
    ),
    (
        re.compile(r"Received status code (\d+)"),
        lambda m: gettext("Received status code %(status)s") % {"status": m[1]},
    ),
    (
        re.compile(r"HTTP (\d+) in (\d+) ms"),
        lambda m: gettext("HTTP %(status)s in %(ms)s ms") % {"status": m[1], "ms": m[2]},
    ),
    (
        re.compile(rf"Connection timed out after {_NUMBER} s"),
        lambda m: gettext("Connection timed out after %(seconds)s s") % {"seconds": m[1]},
    ),
    (
        re.compile(rf"Timed out after {_NUMBER} s"),
        lambda m: gettext("Timed out after %(seconds)s s") % {"seconds": m[1]},
    ),
    # The reason is the operating system's own words ("connection refused"): shown as they are.
    (
        re.compile(r"Connection failed: (.+)", re.S),
        lambda m: gettext("Connection failed: %(reason)s") % {"reason": m[1]},
    ),
    (re.compile(r"Invalid URL: (.+)", re.S), lambda m: gettext("Invalid URL: %(reason)s") % {"reason": m[1]}),
    (re.compile(r"Invalid request: (\w+)"), lambda m: gettext("Invalid request: %(error)s") % {"error": m[1]}),
    (
        re.compile(re.escape(f"Refused: the channel URL points to {NON_PUBLIC}")),
        lambda m: gettext(
            "Refused: the channel URL points to a non-public (loopback, private, link-local or reserved) address"
        ),
    ),
]


def delivery_text_display(stored: str) -> str:
    """`stored` in the active language when it is one of the dispatcher's texts; any other
    text (an LLM's error, a text from before this list) as it is."""
    for pattern, translate in _PATTERNS:
        match = pattern.fullmatch(stored)
        if match:
            return translate(match)
    return stored
