from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

import pytest
from bson import ObjectId
from django.db import connection
from django.utils import timezone
from pymongo.errors import AutoReconnect

from core import counters
from core.counters import counters_flush
from dialogues.documents import message_document
from dialogues.models import Message
from dialogues.store.collections import messages_collection
from dialogues.store.replies import reply_record, reply_store, user_message_give_up
from dialogues.store.usage import usage_add, usage_collection, usage_rebuild
from llm.selectors import DayUsage, chatbot_llm_usage_by_day

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 24, 15, 30, tzinfo=UTC)
TODAY = NOW.date()


def _insert(*docs: dict[str, Any]) -> None:
    """Message documents as the webhook and the worker write them (only the fields the
    selector reads, plus the keys every message has)."""
    dialogue_id, channel_id = ObjectId(), ObjectId()
    cast(Any, connection).get_collection(Message._meta.db_table).insert_many(
        [
            {
                "dialogue_id": dialogue_id,
                "channel_id": channel_id,
                "message_id": f"m-{index}",
                "text": "x",
                **doc,
            }
            for index, doc in enumerate(docs)
        ]
    )


def _reply(bot: ObjectId, at: datetime, prompt: int | None, completion: int | None, state: str = "delivered") -> dict:
    return {
        "chat_bot_id": bot,
        "role": "ASSISTANT",
        "created_at": at,
        "delivery_state": state,
        "reply_state": "",
        "prompt_tokens": prompt,
        "completion_tokens": completion,
    }


def _user(bot: ObjectId, at: datetime, reply_state: str) -> dict:
    return {"chat_bot_id": bot, "role": "USER", "created_at": at, "reply_state": reply_state, "delivery_state": None}


def test_usage_is_grouped_by_utc_day_newest_first_with_every_day_present() -> None:
    bot, other = ObjectId(), ObjectId()
    midnight = datetime(2026, 11, 24, tzinfo=UTC)
    _insert(
        # Today: two replies (one a fallback text, without usage), one customer message that
        # got its reply and one still awaiting it (neither is a failure).
        _reply(bot, NOW - timedelta(hours=1), 100, 20),
        _reply(bot, midnight, None, None),
        _user(bot, NOW - timedelta(hours=2), "replied"),
        _user(bot, NOW - timedelta(minutes=5), "awaiting"),
        # Yesterday, one second before midnight: a reply that went dead, and a customer
        # message that got no reply.
        _reply(bot, midnight - timedelta(seconds=1), 7, 3, state="dead"),
        _user(bot, midnight - timedelta(seconds=1), "failed"),
        _reply(bot, midnight - timedelta(hours=5), 1, 1, state="pending"),
        # The first day of the window, and the day before it.
        _reply(bot, midnight - timedelta(days=29), 5, 5),
        _reply(bot, midnight - timedelta(days=29, seconds=1), 1000, 1000),
        # Another bot's.
        _reply(other, NOW, 500, 500),
        _user(other, NOW, "failed"),
    )

    # Messages written before the worker kept the counts: recounted from the messages.
    usage_rebuild(days=31, now=NOW)
    usage = chatbot_llm_usage_by_day(chat_bot_id=bot, days=30, now=NOW)

    assert len(usage) == 30
    assert [day.day for day in usage] == [TODAY - timedelta(days=offset) for offset in range(30)]
    assert usage[0] == DayUsage(day=TODAY, replies=2, tokens=120, failures=0)
    assert usage[1] == DayUsage(day=date(2026, 11, 23), replies=2, tokens=12, failures=2)
    assert usage[29] == DayUsage(day=date(2026, 10, 26), replies=1, tokens=10, failures=0)
    assert all(day == DayUsage(day=day.day, replies=0, tokens=0, failures=0) for day in usage[2:29])


def test_a_bot_without_messages_has_thirty_empty_days() -> None:
    usage = chatbot_llm_usage_by_day(chat_bot_id=ObjectId(), now=NOW)
    assert len(usage) == 30
    assert {(day.replies, day.tokens, day.failures) for day in usage} == {(0, 0, 0)}


def test_every_day_of_the_window_is_counted() -> None:
    bot = ObjectId()
    _insert(*[_reply(bot, NOW - timedelta(days=n % 30), 1, 1) for n in range(90)])
    usage_rebuild(days=30, now=NOW)
    usage = chatbot_llm_usage_by_day(chat_bot_id=bot, now=NOW)
    assert all((day.replies, day.tokens, day.failures) == (3, 6, 0) for day in usage)


def test_the_worker_counts_replies_tokens_and_failures_as_it_writes_them() -> None:
    bot, dialogue = ObjectId(), ObjectId()
    now = timezone.now()

    def reply(n: int, state: str) -> dict[str, Any]:
        return message_document(
            dialogue_id=dialogue, chat_bot_id=bot, channel_id=ObjectId(), message_id=f"r-{n}",
            role=Message.Role.ASSISTANT.value, text="hi", created_at=now, in_reply_to=f"m-{n}", seq=2 * n,
            delivery_state=state, claim_token="t", llm={"prompt_tokens": 10, "completion_tokens": 5},
        )  # fmt: skip

    first, second = reply(1, "pending"), reply(2, "dead")
    assert reply_store(reply=first) and reply_store(reply=second)
    assert not reply_store(reply={**first, "_id": ObjectId()})  # the same reply again: not counted twice
    assert reply_record(reply_id=first["_id"], chat_bot_id=bot, token="t", values={"delivery_state": "dead"})
    customer = message_document(
        dialogue_id=dialogue, chat_bot_id=bot, channel_id=ObjectId(), message_id="m-9",
        role=Message.Role.USER.value, text="hello", created_at=now, seq=9,
        reply_state=Message.ReplyState.AWAITING.value,
    )  # fmt: skip
    messages_collection().insert_one(customer)
    user_message_give_up(message_id=customer["_id"], chat_bot_id=bot, attempts=3, error="down")
    user_message_give_up(message_id=customer["_id"], chat_bot_id=bot, attempts=3, error="down")  # not again

    [today] = chatbot_llm_usage_by_day(chat_bot_id=bot, days=1)
    assert (today.replies, today.tokens, today.failures) == (2, 30, 3)


def test_counts_are_held_and_written_once_per_bot_and_day(settings: Any) -> None:
    settings.COUNTERS_FLUSH_S = 3600  # the flushing thread stays out of the way
    bot, other = ObjectId(), ObjectId()
    now = timezone.now()
    for _ in range(5):
        usage_add(chat_bot_id=bot, when=now, replies=1, tokens=10)
    usage_add(chat_bot_id=bot, when=now, failures=1)
    usage_add(chat_bot_id=other, when=now, replies=1)
    # Held in memory until the next flush: nothing written yet.
    assert usage_collection().count_documents({"chat_bot_id": {"$in": [bot, other]}}) == 0
    assert counters_flush() == 2  # one document per (bot, day)
    usage_add(chat_bot_id=bot, when=now, replies=1)
    assert counters_flush() == 1
    [today] = chatbot_llm_usage_by_day(chat_bot_id=bot, days=1)
    assert (today.replies, today.tokens, today.failures) == (6, 50, 1)
    [theirs] = chatbot_llm_usage_by_day(chat_bot_id=other, days=1)
    assert theirs.replies == 1


def test_counts_the_database_did_not_take_are_written_by_the_next_flush(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.COUNTERS_FLUSH_S = 3600
    bot = ObjectId()
    usage_add(chat_bot_id=bot, when=timezone.now(), replies=2, tokens=4)

    def down(name: str) -> Any:
        raise AutoReconnect("down")

    monkeypatch.setattr(counters, "_flush_collection", down)
    assert counters_flush() == 0  # the database is down: kept
    monkeypatch.undo()
    usage_add(chat_bot_id=bot, when=timezone.now(), replies=1)
    assert counters_flush() == 1
    [today] = chatbot_llm_usage_by_day(chat_bot_id=bot, days=1)
    assert (today.replies, today.tokens) == (3, 4)
