"""Cutting a reply into messages Telegram takes: `sendMessage`'s text is at most 4,096
characters. Telegram counts text in UTF-16 code units (an emoji outside the BMP is two), so
that is how a part's length is measured here: a part that fits by that count fits by any."""

from __future__ import annotations

import re

MESSAGE_MAX_LENGTH = 4096

# Boundaries, best first: a paragraph, a line, a sentence's end, any space. Each pattern's
# group 1 is the whitespace a cut removes: this part ends at its start, the next begins at its
# end. A sentence ends with . ! ? or … (maybe closed by quotes or brackets) before a space.
_BOUNDARIES = (
    re.compile(r"(\n[ \t]*\n\s*)"),
    re.compile(r"(\n\s*)"),
    re.compile(r"[.!?…][\"'»”)\]]*(\s+)"),
    re.compile(r"(\s+)"),
)


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _fitting_prefix_length(text: str, limit: int) -> int:
    """How many characters (code points) of `text` fit in `limit` UTF-16 code units."""
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return index
    return len(text)


def _cut(text: str, window: int) -> tuple[int, int]:
    """Where to end this part (`end`) and start the next (`start`), for a text longer than the
    `window` characters that fit: at the best boundary inside the window, preferring a higher
    kind of boundary when it leaves this part at least half full."""
    best: tuple[int, int] | None = None
    for pattern in _BOUNDARIES:
        last: tuple[int, int] | None = None
        # The boundary's whitespace may run past the window: only where it starts matters.
        for match in pattern.finditer(text, 0, min(len(text), window + 1)):
            if match.start(1) > 0:
                last = (match.start(1), match.end(1))
        if last is None:
            continue
        if last[0] >= window // 2:
            return last
        if best is None or last[0] > best[0]:
            best = last
    if best is not None:
        return best
    # One word longer than the limit: it is the only thing that may be cut inside.
    return window, window


def text_split(text: str, limit: int = MESSAGE_MAX_LENGTH) -> list[str]:
    """`text` as parts of at most `limit` UTF-16 code units each, in order, cut at paragraph,
    line, sentence or word boundaries (the whitespace at a cut is dropped), inside a word only
    when a single word is longer than `limit`. A text that fits is one part, unchanged."""
    if limit < 2:
        raise ValueError("limit must be at least 2")
    parts: list[str] = []
    rest = text
    while utf16_length(rest) > limit:
        window = _fitting_prefix_length(rest, limit)
        end, start = _cut(rest, window)
        part = rest[:end].rstrip()
        if part:
            parts.append(part)
        rest = rest[start:].lstrip() if start > end else rest[start:]
    if rest.strip() or not parts:
        parts.append(rest)
    return parts
