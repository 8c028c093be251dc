"""The mock LLM's text, with nothing of Django: the app's mock (`llm.client`) and the
benchmark's floors (which run without the framework) answer alike, so that a floor's reply
costs what the app's does."""

from __future__ import annotations

import hashlib

from llm.attachments import item_text
from llm.types import HistoryItem


def mock_llm_text(history: list[HistoryItem]) -> str:
    """Deterministic: the same history always gives the same reply, and different histories
    give different replies, so tests can tell them apart. Files are read as a model without
    vision reads them (a line each), so a message of files only is answered about them."""
    if not history:
        return "Hello! How can I help you?"
    texts = [item_text(item, vision=False) for item in history]
    digest = hashlib.sha256(
        "\n".join(f"{item['role']}:{text}" for item, text in zip(history, texts, strict=True)).encode(
            "utf-8", "surrogatepass"
        )
    ).hexdigest()[:8]
    last = texts[-1]
    quoted = last if len(last) <= 200 else last[:200] + "..."
    return f"Echo ({len(history)} in context, {digest}): {quoted}"
