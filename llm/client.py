"""The LLM interface. The webhook only ever calls `llm_reply_generate`; which implementation
answers is `settings.LLM_BACKEND`, a dotted path to a callable `(history) -> str`, so a real
client drops in without touching the webhook.

`history` is the dialogue's recent messages, oldest first, as
`[{"role": "USER" | "ASSISTANT" | "EMPLOYEE" | "SYSTEM", "text": "..."}, ...]`; the last item
is the customer message being answered.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypedDict

from django.conf import settings
from django.utils.module_loading import import_string


class HistoryItem(TypedDict):
    role: str
    text: str


LLMBackend = Callable[[list[HistoryItem]], str]


class LLMError(Exception):
    """The LLM failed or timed out. The customer message stays stored, its reply pending."""


def mock_llm_call(history: list[HistoryItem]) -> str:
    """Deterministic stand-in: the same history always gives the same reply, and different
    histories give different replies, so tests can tell them apart."""
    delay_ms = settings.LLM_MOCK_DELAY_MS
    if delay_ms:
        time.sleep(delay_ms / 1000)
    if not history:
        return "Hello! How can I help you?"
    last = history[-1]
    digest = hashlib.sha256(
        "\n".join(f"{item['role']}:{item['text']}" for item in history).encode("utf-8", "surrogatepass")
    ).hexdigest()[:8]
    quoted = last["text"] if len(last["text"]) <= 200 else last["text"][:200] + "..."
    return f"Echo ({len(history)} in context, {digest}): {quoted}"


_backend_lock = threading.Lock()
_backend_cache: dict[str, LLMBackend] = {}
# Real clients block on the network; running them in a pool lets us stop waiting after
# LLM_TIMEOUT_S even when a client ignores its own timeout. Calls that overrun keep their
# thread until they return, which the pool size bounds.
_executor: ThreadPoolExecutor | None = None


def llm_backend() -> LLMBackend:
    path = settings.LLM_BACKEND
    backend = _backend_cache.get(path)
    if backend is None:
        with _backend_lock:
            backend = _backend_cache.get(path)
            if backend is None:
                backend = import_string(path)
                _backend_cache[path] = backend
    return backend


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        with _backend_lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="llm")
    return _executor


def llm_reply_generate(*, history: list[HistoryItem]) -> str:
    try:
        backend = llm_backend()
    except ImportError as exc:
        raise LLMError(f"LLM_BACKEND {settings.LLM_BACKEND!r} cannot be imported") from exc
    # The mock needs no timeout guard; skipping the pool saves a thread hop per message.
    if backend is mock_llm_call and not settings.LLM_MOCK_DELAY_MS:
        return backend(history)
    future = _pool().submit(backend, history)
    try:
        reply = future.result(timeout=settings.LLM_TIMEOUT_S)
    except FutureTimeout as exc:
        raise LLMError(f"LLM did not answer within {settings.LLM_TIMEOUT_S} s") from exc
    except Exception as exc:
        raise LLMError(f"LLM failed: {type(exc).__name__}") from exc
    if not isinstance(reply, str) or not reply:
        raise LLMError("LLM returned an empty or non-text reply")
    return reply
