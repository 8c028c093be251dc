"""The mock LLM's text, with nothing of Django: the app's mock (`llm.client`) and the
benchmark's floors (which run without the framework) answer alike, so that a floor's reply
costs what the app's does."""

from __future__ import annotations

import hashlib

from llm.types import HistoryItem


def mock_llm_text(history: list[HistoryItem]) -> str:
    """Deterministic: the same history always gives the same reply, and different histories
    give different replies, so tests can tell them apart."""
    if not history:
        return "Hello! How can I help you?"
    last = history[-1]
    digest = hashlib.sha256(
        "\n".join(f"{item['role']}:{item['text']}" for item in history).encode("utf-8", "surrogatepass")
    ).hexdigest()[:8]
    quoted = last["text"] if len(last["text"]) <= 200 else last["text"][:200] + "..."
    return f"Echo ({len(history)} in context, {digest}): {quoted}"
