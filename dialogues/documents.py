"""The MongoDB document of a message, as the webhook path writes it with pymongo.

No Django imports: the benchmark's no-framework floor writes the very same documents.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId

from core.tracing import trace_new

ATTACHMENT_KEYS = ("url", "mime_type", "name", "size")


def message_document(
    *,
    dialogue_id: ObjectId,
    chat_bot_id: ObjectId,
    channel_id: ObjectId,
    message_id: str,
    role: str,
    text: str,
    created_at: datetime,
    attachments: list[dict[str, Any]] | None = None,
    in_reply_to: str | None = None,
    seq: int | None = None,
    reply_state: str = "",
    delivery_state: str | None = None,
    claimed_until: datetime | None = None,
    claim_token: str = "",
    llm: dict[str, Any] | None = None,
    traceparent: str | None = None,
    tracestate: str = "",
) -> dict[str, Any]:
    # Every field of dialogues.models.Message, as the ORM would write it, so admin and API
    # reads see the same. Every message gets a trace: a new one unless it continues one.
    return {
        "dialogue_id": dialogue_id,
        "chat_bot_id": chat_bot_id,
        "channel_id": channel_id,
        "message_id": message_id,
        "role": role,
        "text": text,
        # `dialogues.models.Attachment`s: {url, mime_type, name, size}, null where not given.
        "attachments": [{key: attachment.get(key) for key in ATTACHMENT_KEYS} for attachment in attachments or []],
        "created_at": created_at,
        "in_reply_to": in_reply_to,
        "seq": seq,
        "reply_state": reply_state,
        "delivery_state": delivery_state,
        "delivery_attempts": 0,
        "last_error": "",
        "last_status_code": None,
        "delivered_at": None,
        "next_attempt_at": None,
        "claimed_until": claimed_until,
        "claim_token": claim_token,
        "delivery_revivals": 0,
        "llm_attempts": 0,
        "llm_backend": "",
        "llm_model": "",
        "prompt_tokens": None,
        "completion_tokens": None,
        "llm_latency_ms": None,
        "author_id": None,
        "author_username": None,
        "traceparent": traceparent or trace_new().traceparent,
        "tracestate": tracestate,
        **(llm or {}),
    }
