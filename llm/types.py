"""What the LLM interface (llm.client) and its backends (llm.openai_backend, a custom
callable) share: a history item, a reply, an error."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypedDict

RATE_HEADER_PREFIX = "x-ratelimit-"
RETRY_HEADERS = ("retry-after", "retry-after-ms")


def rate_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The headers an OpenAI-compatible server paces its clients with (Retry-After,
    retry-after-ms, x-ratelimit-remaining-*, x-ratelimit-reset-*, x-ratelimit-limit-*),
    lower-cased; nothing else of a response is kept."""
    if not headers:
        return {}
    return {
        key.lower(): str(value)[:64]
        for key, value in headers.items()
        if key.lower().startswith(RATE_HEADER_PREFIX) or key.lower() in RETRY_HEADERS
    }


class HistoryItem(TypedDict):
    role: str  # "USER" | "ASSISTANT" | "EMPLOYEE"
    text: str


@dataclass
class LLMReply:
    text: str
    backend: str  # "mock", "openai" or "custom"
    model: str  # "" when unknown
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: int
    # The server's pacing headers (`rate_headers`), for the provider's pacing (llm.pacing).
    rate_headers: dict[str, str] = field(default_factory=dict)


class LLMError(Exception):
    """The LLM failed. `message` is safe to store and show (never the API key); `retryable`
    says whether trying again later can help (a timeout, a 429 or a 5xx can; a bad key or an
    unknown model cannot); `retry_after_s` is the server's Retry-After, if it sent one;
    `status` and `rate_headers` are the server's answer, when it answered (for llm.pacing)."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        retry_after_s: float | None = None,
        status: int | None = None,
        rate_headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.status = status
        self.rate_headers = rate_headers or {}
