"""The operators' inbox: the dialogues that need a human (`dialogues.store.attention`).

Every open inbox asks for it every few seconds, so its cost must not grow with the number of
open tabs: the list is read at most once per INBOX_REFRESH_S per process, by the partial index
`dialogue_attention`, and shared by every request of the process. A row's preview and unread
count are read again only when its dialogue has moved (`last_seq`, `seen_seq`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from bson import ObjectId
from django.utils import timezone

from channels_app.selectors import channel_cached
from chatbots.selectors import chatbot_cached
from core.caching import LookupCache
from core.datetimes import aware
from dialogues.models import PAUSE_INDEX_FROM, PAUSED_INDEFINITELY, Message
from dialogues.store.collections import dialogues_collection, messages_collection

INBOX_REFRESH_S = 1.0
# The most dialogues the inbox lists (the oldest first): beyond that, the operators are far behind.
INBOX_MAX_ROWS = 500
PREVIEW_CHARS = 140
# Unread counts are read up to this many ("99+").
UNREAD_CAP = 100
_PROJECTION = {
    "chat_id": 1,
    "chat_bot_id": 1,
    "channel_id": 1,
    "attention_at": 1,
    "attention_reasons": 1,
    "handoff_reason": 1,
    "assignee_id": 1,
    "assignee_name": 1,
    "seen_seq": 1,
    "last_seq": 1,
    "last_message_at": 1,
    "paused_until": 1,
}


@dataclass
class InboxRow:
    dialogue_id: str
    chat_id: str
    bot_name: str
    channel_name: str
    reasons: list[str]
    handoff_reason: str
    attention_at: datetime
    assignee_id: str | None
    assignee_name: str
    unread: int
    preview: str
    preview_role: str
    last_message_at: datetime | None
    # When the bot takes the chat back by itself (None: it does not: paused until given back,
    # or not paused).
    gives_back_at: datetime | None
    paused: bool

    def as_json(self, *, now: datetime) -> dict[str, Any]:
        data = asdict(self)
        data["attention_at"] = self.attention_at.isoformat()
        data["waiting_s"] = max(0, int((now - self.attention_at).total_seconds()))
        data["last_message_at"] = self.last_message_at.isoformat() if self.last_message_at else None
        data["gives_back_at"] = self.gives_back_at.isoformat() if self.gives_back_at else None
        return data


@dataclass
class _Snapshot:
    rows: list[InboxRow] = field(default_factory=list)
    read_at: float = 0.0


_lock = threading.Lock()
_snapshot = _Snapshot()
# (dialogue id, last_seq, seen_seq) -> (preview, role, unread)
_details = LookupCache(maxsize=20_000, ttl_s=lambda: 3600.0)
# How many times this process read the list (the inbox's benchmark reads it).
reads = 0


def inbox_rows(*, max_age_s: float = INBOX_REFRESH_S) -> list[InboxRow]:
    """The dialogues that need a human, the longest waiting first: read at most once per
    `max_age_s` per process, whoever asks."""
    global _snapshot, reads
    with _lock:
        if time.monotonic() - _snapshot.read_at < max_age_s:
            return _snapshot.rows
        rows = _read()
        reads += 1
        _snapshot = _Snapshot(rows=rows, read_at=time.monotonic())
        return rows


def inbox_forget() -> None:
    """The next request reads the list again (after an operator's action in this process)."""
    global _snapshot
    with _lock:
        _snapshot = _Snapshot()


def _read() -> list[InboxRow]:
    docs = list(
        dialogues_collection()
        .find({"attention_at": {"$gt": PAUSE_INDEX_FROM}}, _PROJECTION)
        .sort([("attention_at", 1)])
        .limit(INBOX_MAX_ROWS)
    )
    now = timezone.now()
    rows = []
    for doc in docs:
        preview, role, unread = _row_details(doc)
        bot = chatbot_cached(doc["chat_bot_id"])
        channel = channel_cached(doc["channel_id"])
        paused_until = aware(doc["paused_until"]) if doc.get("paused_until") else None
        paused = paused_until is not None and paused_until > now
        assignee = doc.get("assignee_id")
        rows.append(
            InboxRow(
                dialogue_id=str(doc["_id"]),
                chat_id=str(doc.get("chat_id") or ""),
                bot_name=bot.name if bot is not None else "",
                channel_name=channel.name if channel is not None else "",
                reasons=list(doc.get("attention_reasons") or []),
                handoff_reason=str(doc.get("handoff_reason") or ""),
                attention_at=aware(doc["attention_at"]),
                assignee_id=str(assignee) if assignee else None,
                assignee_name=str(doc.get("assignee_name") or ""),
                unread=unread,
                preview=preview,
                preview_role=role,
                last_message_at=aware(doc["last_message_at"]) if doc.get("last_message_at") else None,
                gives_back_at=paused_until if paused and paused_until and paused_until < PAUSED_INDEFINITELY else None,
                paused=paused,
            )
        )
    return rows


def _row_details(doc: dict[str, Any]) -> tuple[str, str, int]:
    last_seq = int(doc.get("last_seq") or 0)
    seen_seq = int(doc.get("seen_seq") or 0)
    key = (doc["_id"], last_seq, seen_seq)
    cached = _details.get(key)
    if cached is not None:
        return cached
    messages = messages_collection()
    preview, role = "", ""
    # The last message someone wrote (not a note), among the dialogue's last positions.
    for message in (
        messages.find({"dialogue_id": doc["_id"], "seq": {"$lte": last_seq}}, {"text": 1, "role": 1, "attachments": 1})
        .sort([("seq", -1)])
        .limit(5)
    ):
        if message.get("role") == Message.Role.NOTE:
            continue
        text = str(message.get("text") or "")
        if not text and message.get("attachments"):
            text = "📎"
        preview, role = text[:PREVIEW_CHARS], str(message.get("role") or "")
        break
    unread = 0
    if last_seq > seen_seq:
        unread = messages.count_documents(
            {"dialogue_id": doc["_id"], "seq": {"$gt": seen_seq}, "role": Message.Role.USER.value}, limit=UNREAD_CAP
        )
    details = (preview, role, unread)
    _details.set(key, details)
    return details


def inbox_counts(rows: list[InboxRow], *, user_id: ObjectId | str | None) -> dict[str, int]:
    me = str(user_id) if user_id is not None else None
    return {
        "mine": sum(1 for row in rows if me is not None and row.assignee_id == me),
        "unassigned": sum(1 for row in rows if row.assignee_id is None),
        "all": len(rows),
    }


INBOX_FILTERS = ("mine", "unassigned", "all")


def inbox_filter(rows: list[InboxRow], *, which: str, user_id: ObjectId | str | None) -> list[InboxRow]:
    me = str(user_id) if user_id is not None else None
    if which == "mine":
        return [row for row in rows if me is not None and row.assignee_id == me]
    if which == "unassigned":
        return [row for row in rows if row.assignee_id is None]
    return list(rows)
