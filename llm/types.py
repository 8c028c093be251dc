"""What the LLM interface (llm.client) and its backends (llm.openai_backend, a custom
callable) share: a history item, a reply, an error."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict

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


class HistoryAttachment(TypedDict):
    """A file sent with a message, by link (`dialogues.models.Attachment`); only `url` is
    always known."""

    url: str
    mime_type: str | None
    name: str | None
    size: int | None


class HistoryItem(TypedDict):
    role: str  # "USER" | "ASSISTANT" | "EMPLOYEE"
    # What was written; "" for a message of files only.
    text: str
    # Present only on a message that came with files, so items without stay exactly as before
    # (custom backends written for `{role, text}` see no change).
    attachments: NotRequired[list[HistoryAttachment]]


def history_item(*, role: str, text: str, attachments: list[dict[str, Any]] | None = None) -> HistoryItem:
    """A history item from a stored message's fields; `attachments` as stored (null: none)."""
    item = HistoryItem(role=role, text=text)
    files = [
        HistoryAttachment(
            url=str(file["url"]), mime_type=file.get("mime_type"), name=file.get("name"), size=file.get("size")
        )
        for file in attachments or []
        if file.get("url")
    ]
    if files:
        item["attachments"] = files
    return item


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
    # The model asked for a human (the `handoff_to_human` tool), with this reason.
    handoff_reason: str | None = None


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
