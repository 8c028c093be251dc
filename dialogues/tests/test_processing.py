from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.test import override_settings

from channels_app.tests.factories import ChannelFactory
from dialogues.delivery import utcnow
from dialogues.llm import HistoryItem
from dialogues.models import Dialogue, Message
from dialogues.services import dialogue_upsert, webhook_message_process
from tests.support.receiver import Reply

pytestmark = pytest.mark.django_db

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


def process(channel, **fields):  # type: ignore[no-untyped-def]
    values = {"chat_id": str(channel.pk), "text": "hello", "message_sender": "customer"}
    values.update(fields)
    return webhook_message_process(chat_bot=channel.chat_bot, **values)


@override_settings(LLM_BACKEND="dialogues.tests.test_processing.recording_llm")
def test_employee_message_reaches_the_llm_history_of_the_next_customer_message(channel) -> None:
    process(channel, message_id="c-1", text="Is the blue one in stock?")
    process(channel, message_id="e-1", text="Yes, two left", message_sender="employee")
    process(channel, message_id="c-2", text="Great, I take one")

    assert len(LLM_CALLS) == 2  # the employee message got no LLM call
    assert LLM_CALLS[-1] == [
        {"role": "USER", "text": "Is the blue one in stock?"},
        {"role": "ASSISTANT", "text": "reply to Is the blue one in stock?"},
        {"role": "EMPLOYEE", "text": "Yes, two left"},
        {"role": "USER", "text": "Great, I take one"},
    ]


@override_settings(LLM_BACKEND="dialogues.tests.test_processing.recording_llm", LLM_CONTEXT_MESSAGES=3)
def test_llm_sees_only_the_last_context_messages_oldest_first(channel) -> None:
    for number in range(1, 4):
        process(channel, message_id=f"m-{number}", text=f"question {number}")

    assert LLM_CALLS[-1] == [
        {"role": "USER", "text": "question 2"},
        {"role": "ASSISTANT", "text": "reply to question 2"},
        {"role": "USER", "text": "question 3"},
    ]


def test_history_is_per_dialogue(channel) -> None:
    with override_settings(LLM_BACKEND="dialogues.tests.test_processing.recording_llm"):
        process(channel, chat_id="alice", channel_id=str(channel.pk), message_id="a", text="from alice")
        process(channel, chat_id="bob", channel_id=str(channel.pk), message_id="b", text="from bob")
    assert LLM_CALLS[-1] == [{"role": "USER", "text": "from bob"}]


def test_llm_error_leaves_the_message_stored_and_its_reply_pending(channel, receiver) -> None:
    with override_settings(LLM_BACKEND="dialogues.tests.test_processing.failing_llm"):
        result = process(channel, message_id="m-1")

    assert result.reply_pending is True
    assert result.replied is False
    user = Message.objects.get()
    assert user.role == Message.Role.USER
    assert user.reply_state == Message.ReplyState.AWAITING
    assert user.claimed_until is None  # released: a later run may take over at once
    assert receiver.requests == []
    assert Dialogue.objects.get().message_count == 1


def test_duplicate_resumes_a_reply_that_was_never_generated(channel, receiver) -> None:
    with override_settings(LLM_BACKEND="dialogues.tests.test_processing.failing_llm"):
        process(channel, message_id="m-1")
    result = process(channel, message_id="m-1")

    assert result.duplicate is True
    assert result.resumed is True
    assert result.replied is True
    assert result.delivery == "delivered"
    assert Message.objects.filter(role=Message.Role.USER).count() == 1
    assert Message.objects.filter(role=Message.Role.ASSISTANT, in_reply_to="m-1").count() == 1
    assert len(receiver.requests) == 1
    assert Dialogue.objects.get().message_count == 2


def test_duplicate_does_not_call_the_llm_while_the_original_is_generating(channel, receiver) -> None:
    with override_settings(LLM_BACKEND="dialogues.tests.test_processing.failing_llm"):
        process(channel, message_id="m-1")
    # As if the original request were still waiting for the LLM: its lease is live.
    Message.objects.filter(message_id="m-1").update(claimed_until=utcnow() + timedelta(seconds=30))

    with override_settings(LLM_BACKEND="dialogues.tests.test_processing.recording_llm"):
        result = process(channel, message_id="m-1")

    assert result.duplicate is True and result.resumed is False and result.reply_pending is True
    assert LLM_CALLS == []
    assert Message.objects.filter(role=Message.Role.ASSISTANT).count() == 0


def test_duplicate_resumes_an_undelivered_reply_once_the_channel_is_back(channel, receiver) -> None:
    receiver.default = Reply(status=500)
    with override_settings(CHANNEL_MAX_RETRIES=0):
        first = process(channel, message_id="m-1")
    assert first.delivery == "queued"

    receiver.default = Reply(status=200)
    again = process(channel, message_id="m-1")
    after = process(channel, message_id="m-1")

    assert again.duplicate is True and again.resumed is True and again.delivery == "delivered"
    assert after.duplicate is True and after.resumed is False and after.delivery == "delivered"
    assert len(receiver.requests) == 2
    assert receiver.requests[0].json == receiver.requests[1].json
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert reply.delivery_state == "delivered"
    assert reply.delivery_attempts == 2


def test_duplicate_does_not_redeliver_a_reply_someone_holds(channel, receiver) -> None:
    receiver.default = Reply(status=500)
    with override_settings(CHANNEL_MAX_RETRIES=0):
        process(channel, message_id="m-1")
    Message.objects.filter(role=Message.Role.ASSISTANT).update(claimed_until=utcnow() + timedelta(seconds=30))
    receiver.default = Reply(status=200)

    result = process(channel, message_id="m-1")

    assert result.resumed is False and result.delivery == "queued"
    assert len(receiver.requests) == 1


def test_concurrent_first_messages_make_one_dialogue(channel) -> None:
    barrier = threading.Barrier(8)
    ids: list[object] = []
    errors: list[BaseException] = []

    def run() -> None:
        from django.db import connection

        try:
            barrier.wait()
            ids.append(
                dialogue_upsert(chat_bot_id=channel.chat_bot_id, channel_id=channel.pk, chat_id="same").dialogue_id
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
    assert len(set(ids)) == 1
    assert Dialogue.objects.filter(chat_id="same").count() == 1


def test_concurrent_duplicates_store_one_copy_and_one_reply(channel, receiver) -> None:
    barrier = threading.Barrier(10)
    results: list[object] = []

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
    assert sum(1 for r in results if not r.duplicate) == 1  # type: ignore[attr-defined]
    assert Message.objects.filter(message_id="same-id").count() == 1
    assert Message.objects.filter(role=Message.Role.ASSISTANT).count() == 1
    assert len(receiver.wait_for(1, timeout=2)) == 1


def test_a_dialogue_deleted_behind_the_id_cache_is_created_again(channel, receiver) -> None:
    """The process keeps dialogue ids; a dialogue deleted since (bot or channel cleanup, an
    operator in the admin) must not swallow the next message."""
    first = process(channel, message_id="m-1")
    second = process(channel, message_id="m-2")
    assert second.dialogue_id == first.dialogue_id  # the cached id, positions 3 and 4
    assert list(Message.objects.filter(message_id="m-2").values_list("seq", flat=True)) == [3]

    Message.objects.filter(dialogue_id=first.dialogue_id).delete()
    Dialogue.objects.filter(pk=first.dialogue_id).delete()
    third = process(channel, message_id="m-3")

    assert third.dialogue_id != first.dialogue_id and third.replied
    dialogue = Dialogue.objects.get(chat_id=str(channel.pk))
    assert str(dialogue.pk) == third.dialogue_id
    assert list(dialogue.messages.order_by("seq").values_list("message_id", "seq")) == [
        ("m-3", 1),
        (third.reply_message_id, 2),
    ]
    assert len(receiver.wait_for(3, timeout=2)) == 3


def test_other_channel_of_the_same_bot_keeps_its_own_dialogue(channel, receiver) -> None:
    second = ChannelFactory(chat_bot=channel.chat_bot, url=receiver.url)
    process(channel, message_id="m-1")
    process(second, message_id="m-1")
    assert Dialogue.objects.count() == 2
    assert {r.json["chat_id"] for r in receiver.requests} == {str(channel.pk), str(second.pk)}


@pytest.mark.django_db(transaction=True)
def test_history_is_a_bounded_read_by_position_in_a_long_dialogue() -> None:
    """The LLM context of a message in a long dialogue comes from the (dialogue, seq) range,
    not a scan of the dialogue, and keeps the order of positions."""
    from django.db import connection

    from dialogues.services import dialogue_history

    channel = ChannelFactory()
    slot = dialogue_upsert(
        chat_bot_id=channel.chat_bot_id, channel_id=channel.pk, chat_id=str(channel.pk), reserve=3000
    )
    docs = [
        {
            "dialogue_id": slot.dialogue_id,
            "chat_bot_id": channel.chat_bot_id,
            "channel_id": channel.pk,
            "message_id": f"m{seq}",
            "role": "USER" if seq % 2 else "ASSISTANT",
            "text": f"text {seq}",
            "seq": seq,
        }
        # Every third position is a gap (a duplicate's or an ungenerated reply's).
        for seq in range(1, 3001)
        if seq % 3
    ]
    connection.get_collection("dialogues_message").insert_many(docs)
    last = connection.get_collection("dialogues_message").find_one({"message_id": "m2999"})

    history = dialogue_history(dialogue_id=slot.dialogue_id, last_id=last["_id"], last_seq=2999, limit=20)

    expected = [seq for seq in range(1, 3000) if seq % 3][-20:]
    assert [item["text"] for item in history] == [f"text {seq}" for seq in expected]


@override_settings(LLM_BACKEND="dialogues.tests.test_processing.recording_llm")
def test_reply_stored_by_another_worker_is_not_stored_twice(channel) -> None:
    """A worker whose lease expired comes back after another one stored the reply: the unique
    (dialogue, in_reply_to) index keeps one reply, and the message is still marked replied."""
    from django.db import connection

    from dialogues.services import reply_generate

    with override_settings(LLM_BACKEND="dialogues.tests.test_processing.failing_llm"):
        result = process(channel, message_id="c-1", text="hello")
    assert result.reply_pending
    messages = connection.get_collection("dialogues_message")
    user = messages.find_one({"message_id": "c-1"})
    first = reply_generate(user_message=user, channel=channel, reply_counted=False)
    assert first.reply is not None

    second = reply_generate(user_message=user, channel=channel, reply_counted=False)

    assert second.reply is None and second.existing
    assert Message.objects.filter(role="ASSISTANT", in_reply_to="c-1").count() == 1
    assert messages.find_one({"message_id": "c-1"})["reply_state"] == "replied"
    assert Dialogue.objects.get().message_count == 2
