from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from channels_app.tests.factories import ChannelFactory
from dialogues.documents import message_document
from dialogues.ingest import WebhookResult, webhook_message_process
from dialogues.models import Dialogue, Message
from dialogues.store.collections import dialogues_collection, messages_collection
from dialogues.store.recovery import due_later_make_now
from dialogues.store.replies import reply_store
from dialogues.store.reservation import dialogue_reserve
from llm.client import HistoryItem, mock_llm_call

pytestmark = pytest.mark.django_db

Drain = Callable[[], None]

# What the recording backend saw, call by call.
LLM_CALLS: list[list[HistoryItem]] = []


def recording_llm(history: list[HistoryItem]) -> str:
    LLM_CALLS.append(list(history))
    return f"reply to {history[-1]['text']}"


def failing_llm(history: list[HistoryItem]) -> str:
    raise RuntimeError("model overloaded")


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    LLM_CALLS.clear()


def process(channel, **fields) -> WebhookResult:  # type: ignore[no-untyped-def]
    values = {"chat_id": str(channel.pk), "text": "hello", "message_sender": "customer"}
    values.update(fields)
    return webhook_message_process(chat_bot=channel.chat_bot, **values)


def user(text: str) -> HistoryItem:
    return {"role": "USER", "text": text}


def test_employee_message_reaches_the_llm_history_of_the_next_customer_message(channel, receiver, drain) -> None:
    process(channel, message_id="c-1", text="Is the blue one in stock?")
    process(channel, message_id="e-1", text="Yes, two left", message_sender="employee")
    process(channel, message_id="c-2", text="Great, I take one")
    drain()

    first, second = (r.json["text"] for r in receiver.requests)
    # The mock echoes its context: the first reply saw only its own message, not the
    # employee's message stored after it; the second saw everything before it, in order.
    assert first == mock_llm_call([user("Is the blue one in stock?")])
    assert second == mock_llm_call(
        [
            user("Is the blue one in stock?"),
            {"role": "ASSISTANT", "text": first},
            {"role": "EMPLOYEE", "text": "Yes, two left"},
            user("Great, I take one"),
        ]
    )
    assert second.startswith("Echo (4 in context, ")
    # The employee message got no reply of its own.
    assert [r.json["in_reply_to"] for r in receiver.requests] == ["c-1", "c-2"]


@override_settings(LLM_BACKEND="dialogues.tests.test_processing.recording_llm", LLM_CONTEXT_MESSAGES=3)
def test_llm_sees_only_the_last_context_messages_oldest_first(channel, drain) -> None:
    for number in range(1, 4):
        process(channel, message_id=f"m-{number}", text=f"question {number}")
    drain()

    assert len(LLM_CALLS) == 3
    assert LLM_CALLS[-1] == [
        user("question 2"),
        {"role": "ASSISTANT", "text": "reply to question 2"},
        user("question 3"),
    ]


@override_settings(LLM_BACKEND="dialogues.tests.test_processing.recording_llm")
def test_history_is_per_dialogue(channel, drain) -> None:
    process(channel, chat_id="alice", channel_id=str(channel.pk), message_id="a", text="from alice")
    process(channel, chat_id="bob", channel_id=str(channel.pk), message_id="b", text="from bob")
    drain()

    assert sorted(LLM_CALLS, key=str) == [[user("from alice")], [user("from bob")]]


@override_settings(LLM_BACKEND="dialogues.tests.test_processing.failing_llm")
def test_llm_error_leaves_the_message_stored_and_its_reply_pending(channel, receiver, drain) -> None:
    result = process(channel, message_id="m-1")
    drain()

    assert result.reply_pending is True
    assert result.replied is False
    message = Message.objects.get()
    assert message.role == Message.Role.USER
    assert message.reply_state == Message.ReplyState.AWAITING
    assert message.llm_attempts == 1
    assert message.next_attempt_at is not None and message.next_attempt_at > timezone.now()
    assert "RuntimeError" in message.last_error
    assert receiver.requests == []
    dialogue = dialogues_collection().find_one({"_id": message.dialogue_id})
    # Due again at the retry, and held by no one meanwhile.
    assert "work_due_at" in dialogue and "claim_token" not in dialogue


def test_duplicate_never_resumes_work_itself_the_worker_does(channel, receiver, drain) -> None:
    with override_settings(LLM_BACKEND="dialogues.tests.test_processing.failing_llm"):
        process(channel, message_id="m-1")
        drain()

    with override_settings(LLM_BACKEND="dialogues.tests.test_processing.recording_llm"):
        again = process(channel, message_id="m-1")
        assert again.duplicate is True and again.resumed is False
        assert again.reply_pending is True and again.replied is False
        assert LLM_CALLS == []  # the duplicate called nothing
        assert Message.objects.filter(role=Message.Role.ASSISTANT).count() == 0

        due_later_make_now()
        drain()

    assert len(LLM_CALLS) == 1
    assert Message.objects.filter(role=Message.Role.USER).count() == 1
    assert Message.objects.filter(role=Message.Role.ASSISTANT, in_reply_to="m-1").count() == 1
    assert [r.json["text"] for r in receiver.requests] == ["reply to hello"]
    assert Dialogue.objects.get().message_count == 2


def test_concurrent_first_messages_make_one_dialogue(channel) -> None:
    barrier = threading.Barrier(8)
    slots: list[object] = []
    errors: list[BaseException] = []

    def run() -> None:
        from django.db import connection

        try:
            barrier.wait()
            slots.append(
                dialogue_reserve(
                    chat_bot_id=channel.chat_bot_id, channel_id=channel.pk, chat_id="same", reserve=2, owes_work=True
                )
            )
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len({slot.dialogue_id for slot in slots}) == 1  # type: ignore[attr-defined]
    # Each caller got its own two positions, and each reservation was counted once.
    assert sorted(slot.first_seq for slot in slots) == [1, 3, 5, 7, 9, 11, 13, 15]  # type: ignore[attr-defined]
    dialogue = Dialogue.objects.get(chat_id="same")
    assert dialogue.message_count == 16 and dialogue.last_seq == 16


def test_concurrent_duplicates_store_one_copy_and_one_reply(channel, receiver, drain) -> None:
    barrier = threading.Barrier(10)
    results: list[WebhookResult] = []

    def run() -> None:
        from django.db import connection

        try:
            barrier.wait()
            results.append(process(channel, message_id="same-id"))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 10
    assert sum(1 for r in results if not r.duplicate) == 1
    assert all(r.reply_pending for r in results)  # each knows a reply is owed, none resumed work
    assert Message.objects.filter(message_id="same-id").count() == 1
    assert Dialogue.objects.get().message_count == 2  # the duplicates' reservations were given back

    drain()
    drain()
    assert Message.objects.filter(role=Message.Role.ASSISTANT).count() == 1
    assert [r.json["in_reply_to"] for r in receiver.requests] == ["same-id"]


def test_a_dialogue_deleted_behind_the_id_cache_is_created_again(channel, receiver, drain) -> None:
    """The process keeps dialogue ids; a dialogue deleted since (bot or channel cleanup, an
    operator in the admin) must not swallow the next message."""
    first = process(channel, message_id="m-1")
    second = process(channel, message_id="m-2")
    assert second.dialogue_id == first.dialogue_id  # the cached id, positions 3 and 4
    assert list(Message.objects.filter(message_id="m-2").values_list("seq", flat=True)) == [3]

    Message.objects.filter(dialogue_id=first.dialogue_id).delete()
    Dialogue.objects.filter(pk=first.dialogue_id).delete()
    third = process(channel, message_id="m-3")

    assert third.dialogue_id != first.dialogue_id and third.reply_pending
    drain()
    dialogue = Dialogue.objects.get(chat_id=str(channel.pk))
    assert str(dialogue.pk) == third.dialogue_id
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert list(dialogue.messages.order_by("seq").values_list("message_id", "seq")) == [
        ("m-3", 1),
        (reply.message_id, 2),
    ]
    assert [r.json["in_reply_to"] for r in receiver.requests] == ["m-3"]


def test_other_channel_of_the_same_bot_keeps_its_own_dialogue(channel, receiver, drain) -> None:
    second = ChannelFactory(chat_bot=channel.chat_bot, url=receiver.url)
    process(channel, message_id="m-1")
    process(second, message_id="m-1")
    drain()
    assert Dialogue.objects.count() == 2
    assert sorted(r.json["chat_id"] for r in receiver.requests) == sorted([str(channel.pk), str(second.pk)])


@pytest.mark.parametrize("gap_every", [10, 3])
def test_llm_context_in_a_long_dialogue_is_its_latest_messages_by_position(
    channel, receiver, drain: Drain, gap_every: int
) -> None:
    """A long dialogue that the worker has long settled: the next reply's context is the
    latest LLM_CONTEXT_MESSAGES messages by position (not by time, not a scan of the
    dialogue), skipping the positions that stayed empty (duplicates', ungenerated replies')."""
    slot = dialogue_reserve(
        chat_bot_id=channel.chat_bot_id, channel_id=channel.pk, chat_id=str(channel.pk), reserve=3000, owes_work=False
    )
    newest_first = timezone.now()
    docs = [
        message_document(
            dialogue_id=slot.dialogue_id,
            chat_bot_id=channel.chat_bot_id,
            channel_id=channel.pk,
            message_id=f"m{seq}",
            role="USER" if seq % 2 else "ASSISTANT",
            text=f"text {seq}",
            # Times run backwards: the position, not the time, orders the context.
            created_at=newest_first - timedelta(seconds=seq),
            seq=seq,
            reply_state="replied" if seq % 2 else "",
            delivery_state=None if seq % 2 else "delivered",
        )
        for seq in range(1, 3001)
        if seq % gap_every
    ]
    messages_collection().insert_many(docs)
    dialogues_collection().update_one({"_id": slot.dialogue_id}, {"$set": {"done_seq": 3000}})

    process(channel, message_id="next", text="and now?")
    drain()

    earlier = [seq for seq in range(1, 3001) if seq % gap_every][-19:]
    expected: list[HistoryItem] = [
        {"role": "USER" if seq % 2 else "ASSISTANT", "text": f"text {seq}"} for seq in earlier
    ] + [user("and now?")]
    [received] = receiver.requests
    assert received.json["in_reply_to"] == "next"
    assert received.json["text"] == mock_llm_call(expected)


def test_a_channel_that_sends_everything_twice_does_not_shorten_the_llm_context(
    channel, receiver, drain: Drain
) -> None:
    """Each duplicate leaves its two reserved positions empty; the context still holds the
    latest LLM_CONTEXT_MESSAGES messages."""
    for number in range(12):
        process(channel, message_id=f"m-{number}", text=f"question {number}")
        process(channel, message_id=f"m-{number}", text=f"question {number}")
        drain()

    texts = [r.json["text"] for r in receiver.requests]
    assert len(texts) == 12
    # 11 earlier questions and their replies, then the last question: the latest 20 of 23.
    assert texts[-1].startswith("Echo (20 in context, "), texts[-1]


def test_a_backlog_longer_than_one_read_is_answered_in_full_and_in_order(channel, receiver, drain: Drain) -> None:
    """The worker was away for a while: one chat has 50 messages owed, all stored seconds ago."""
    for number in range(50):
        process(channel, message_id=f"m-{number}", text=f"question {number}")
    dialogue = Dialogue.objects.get()
    dialogues_collection().update_one(
        {"_id": dialogue.pk}, {"$set": {"last_message_at": timezone.now() - timedelta(seconds=30)}}
    )
    drain()

    assert [r.json["in_reply_to"] for r in receiver.requests] == [f"m-{n}" for n in range(50)]
    assert Message.objects.filter(reply_state=Message.ReplyState.AWAITING).count() == 0


def test_reply_stored_by_another_worker_is_not_stored_twice(channel, receiver, drain) -> None:
    """A worker whose lease expired comes back after another one stored the reply: the unique
    (dialogue, in_reply_to) index keeps one reply, and the message is still marked replied."""
    result = process(channel, message_id="c-1", text="hello")
    customer = messages_collection().find_one({"message_id": "c-1"})

    def reply_document(text: str) -> dict:  # type: ignore[type-arg]
        return message_document(
            dialogue_id=customer["dialogue_id"],
            chat_bot_id=channel.chat_bot_id,
            channel_id=channel.pk,
            message_id=str(uuid.uuid4()),
            role="ASSISTANT",
            text=text,
            created_at=timezone.now(),
            in_reply_to="c-1",
            seq=customer["seq"] + 1,
            delivery_state="pending",
        )

    assert reply_store(reply=reply_document("the first worker's reply")) is True
    assert reply_store(reply=reply_document("the late worker's reply")) is False

    assert Message.objects.filter(role="ASSISTANT", in_reply_to="c-1").count() == 1
    assert str(Dialogue.objects.get().pk) == result.dialogue_id
    assert Dialogue.objects.get().message_count == 2

    # The first worker died before marking the message replied: the next one sees the reply
    # next to it, delivers that reply, generates no other, and marks the message.
    drain()
    assert [r.json["text"] for r in receiver.requests] == ["the first worker's reply"]
    assert Message.objects.filter(role="ASSISTANT").count() == 1
    assert messages_collection().find_one({"_id": customer["_id"]})["reply_state"] == "replied"
