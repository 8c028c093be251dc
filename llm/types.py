"""What the LLM interface (llm.client) and its backends (llm.openai_backend, a custom
callable) share: a history item, a reply, an error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict


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


class LLMError(Exception):
    """The LLM failed. `message` is safe to store and show (never the API key); `retryable`
    says whether trying again later can help (a timeout, a 429 or a 5xx can; a bad key or an
    unknown model cannot); `retry_after_s` is the server's Retry-After, if it sent one."""

    def __init__(self, message: str, *, retryable: bool = True, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.retry_after_s = retry_after_s
