"""Calls to the VK API (`https://api.vk.com/method/<method>`, form-encoded) and the rules that
read its answers.

VK answers HTTP 200 to nearly everything: a failure is `{"error": {"error_code", "error_msg"}}`
in the body, a success `{"response": ...}`. The access token travels in the form body (never
in the URL), so neither our logs nor `provider_call`'s errors can hold it."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from channels_app.dispatch import AttemptOutcome, ProviderAnswer, answer_outcome, provider_call
from channels_app.models import Channel

# messages.send takes at most this many characters in `message`.
MESSAGE_MAX_LENGTH = 4096
# VK's codes that a later attempt can get past: 6 "Too many requests per second", 9 "Flood
# control" (too many similar actions), 10 "Internal server error". Every other code (5 a revoked
# key, 7/15 no rights, 100 a bad parameter, 901 "can't send messages to this user without
# permission", 902 the user's privacy settings...) fails the same way every time.
RETRYABLE_CODES = frozenset({6, 9, 10})
# VK allows about 20 calls per second with a community key: a second later there is room again.
TOO_MANY_REQUESTS_RETRY_AFTER_S = 1.0
# random_id is a signed 32-bit int in VK's API; a positive 31-bit value is always valid.
RANDOM_ID_MASK = 0x7FFFFFFF
# A typing indicator late by seconds is worse than none.
TYPING_DEADLINE_S = 2.0
ERROR_MSG_MAX_LENGTH = 200


@dataclass(frozen=True)
class VkApi:
    """Where a channel's calls go and with what: read from the channel each time, so a changed
    key or version applies to the next call."""

    base_url: str
    access_token: str
    version: str
    group_id: int

    @classmethod
    def of(cls, channel: Channel) -> VkApi:
        options = channel.kind_options or {}
        return cls(
            base_url=channel.settings.url.rstrip("/"),
            access_token=channel.settings.token,
            version=str(options.get("api_version") or ""),
            group_id=int(options.get("group_id") or 0),
        )

    def call(
        self,
        method: str,
        params: dict[str, str],
        *,
        log_context: dict[str, Any],
        deadline_s: float | None = None,
    ) -> ProviderAnswer:
        form = {**params, "access_token": self.access_token, "v": self.version}
        return provider_call(
            url=f"{self.base_url}/{method}",
            form=form,
            deadline_s=deadline_s,
            log_context={**log_context, "vk_method": method},
            log_event="vk api call",
        )


def random_id_for(key: str) -> int:
    """The `random_id` of one message: the same key gives the same id on every attempt, so VK
    drops a repeat itself (it keeps one message per random_id and peer)."""
    value = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") & RANDOM_ID_MASK
    return value or 1


def answer_read(answer: ProviderAnswer) -> AttemptOutcome:
    """A VK API answer as an attempt's outcome, by VK's error codes."""
    if answer.error:
        return answer_outcome(answer, ok=False)
    status = answer.status_code or 0
    if status >= 500 or status == 429:
        return answer_outcome(answer, ok=False, error=f"HTTP {status}", retry_after_s=answer.retry_after_s)
    if status != 200:
        # VK's API answers 200 to every call it read; anything else is not VK (a proxy, a wrong
        # base URL), and will answer the same again.
        return answer_outcome(answer, ok=False, error=f"HTTP {status}", permanent=True)
    data = answer.data
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        error = data["error"]
        code = error.get("error_code")
        message = str(error.get("error_msg") or "")[:ERROR_MSG_MAX_LENGTH]
        retryable = code in RETRYABLE_CODES
        return answer_outcome(
            answer,
            ok=False,
            error=f"VK error {code}: {message}",
            permanent=not retryable,
            retry_after_s=TOO_MANY_REQUESTS_RETRY_AFTER_S if code == 6 else None,
        )
    if isinstance(data, dict) and "response" in data:
        return answer_outcome(answer, ok=True)
    # A 200 that is neither: whatever happened, a retry is safe (random_id drops a repeat).
    return answer_outcome(answer, ok=False, error="VK answered without a response or an error")


_LINE_END = re.compile(r"\n")
_SENTENCE_END = re.compile(r"[.!?…](?:[\"'»)\]]*)\s")
_SPACE = re.compile(r"\s")


def text_split(text: str, limit: int = MESSAGE_MAX_LENGTH) -> list[str]:
    """`text` in parts of at most `limit` characters, cut at the last line break, else the last
    sentence end, else the last space in each part's second half; a word longer than that is cut
    where the limit falls."""
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[:limit]
        cut = _last_cut(window, limit)
        part = rest[:cut].rstrip()
        if not part:  # only whitespace before the cut: cut at the limit instead
            part, cut = rest[:limit], limit
        parts.append(part)
        rest = rest[cut:].lstrip()
    if rest or not parts:
        parts.append(rest)
    return parts


def _last_cut(window: str, limit: int) -> int:
    # A cut in the window's first half would make a short part and as many more parts.
    floor = limit // 2
    for pattern in (_LINE_END, _SENTENCE_END, _SPACE):
        ends = [match.end() for match in pattern.finditer(window) if match.end() > floor]
        if ends:
            return ends[-1]
    return limit
