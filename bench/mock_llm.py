"""The app's mock LLM (llm.client.mock_llm_call) without Django, for the floors: the same text
from the same history, so that a floor's reply costs what the app's does."""

from __future__ import annotations

import hashlib


def mock_llm(history: list[dict[str, str]]) -> str:
    # The same work as llm.client.mock_llm_call.
    if not history:
        return "Hello! How can I help you?"
    last = history[-1]
    digest = hashlib.sha256(
        "\n".join(f"{h['role']}:{h['text']}" for h in history).encode("utf-8", "surrogatepass")
    ).hexdigest()[:8]
    quoted = last["text"] if len(last["text"]) <= 200 else last["text"][:200] + "..."
    return f"Echo ({len(history)} in context, {digest}): {quoted}"
