"""The burst reply policy through the real webhook and the real worker (in this process),
against a real local receiver playing the channel: messages written in quick succession get
one reply, made once the chat is quiet."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from chatbots.models import ChatBot
from core import metrics
from devtools.receiver import ChannelReceiver
from dialogues.models import Dialogue, Message
from dialogues.tests.conftest import WEBHOOK_URL, customer_message

pytestmark = pytest.mark.django_db

Drain = Callable[[], None]
QUIET_MS = 300

# What the LLM was asked, per call (the custom backends below record it).
CALLS: list[list[dict[str, Any]]] = []
# Run inside the first LLM call, once: a customer writing while the reply is being generated.
DURING_FIRST_CALL: list[Callable[[], None]] = []


def recording_llm(history: list[dict[str, Any]]) -> str:
    CALLS.append([dict(item) for item in history])
    if DURING_FIRST_CALL:
        DURING_FIRST_CALL.pop()()
    return f"answer {len(CALLS)}"


def failing_llm(history: list[dict[str, Any]]) -> str:
    from llm.types import LLMError

    CALLS.append([dict(item) for item in history])
    raise LLMError("the model refused", retryable=False)


@pytest.fixture(autouse=True)
def _calls() -> None:
    CALLS.clear()
    DURING_FIRST_CALL.clear()


@pytest.fixture
def burst_bot(bot: ChatBot, settings) -> ChatBot:  # type: ignore[no-untyped-def]
    settings.LLM_BACKEND = "worker.tests.test_burst.recording_llm"
    bot.reply_policy = ChatBot.ReplyPolicy.BURST
    bot.burst_quiet_ms = QUIET_MS
    bot.burst_max_wait_ms = 8000
    bot.save()
    return bot


def _quiet() -> None:
    time.sleep(QUIET_MS / 1000 + 0.1)


def _dialogue_counts_hold() -> None:
    """The dialogue's message count is what is stored: a burst's unused reply places were
    counted off once."""
    for dialogue in Dialogue.objects.all():
        assert dialogue.message_count == Message.objects.filter(dialogue_id=dialogue.pk).count()


def test_a_burst_of_four_messages_gets_one_reply_answering_all_four(
    burst_bot, channel, post_webhook, receiver: ChannelReceiver, drain: Drain
) -> None:
    for number in range(1, 5):
        response = post_webhook(customer_message(channel, message_id=f"m-{number}", text=f"part {number}"))
        assert response.status_code == 200
    drain()
    assert receiver.requests == []  # the chat is not quiet yet: nothing is generated
    assert CALLS == []

    _quiet()
    drain()
    assert len(receiver.requests) == 1
    body = receiver.requests[0].json
    assert body["answers"] == ["m-1", "m-2", "m-3", "m-4"]
    assert body["in_reply_to"] == "m-4" and body["text"] == "answer 1"
    # One LLM call, which saw every message of the burst, in order.
    assert len(CALLS) == 1
    assert [item["text"] for item in CALLS[0] if item["role"] == "USER"] == [f"part {n}" for n in range(1, 5)]
    users = Message.objects.filter(role=Message.Role.USER).order_by("seq")
    assert [m.reply_state for m in users] == ["replied"] * 4
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert reply.in_reply_to == "m-4" and reply.delivery_state == "delivered"
    assert receiver.requests[0].headers["webhook-id"] == reply.message_id
    _dialogue_counts_hold()

    drain()  # nothing more is owed
    assert len(receiver.requests) == 1

    # The next burst of the same chat gets its own reply.
    post_webhook(customer_message(channel, message_id="m-5", text="one more thing"))
    _quiet()
    drain()
    assert len(receiver.requests) == 2
    assert receiver.requests[1].json["answers"] == ["m-5"]
    _dialogue_counts_hold()


def test_a_message_arriving_during_the_generation_drops_it_and_the_reply_covers_it(
    burst_bot, channel, post_webhook, receiver: ChannelReceiver, drain: Drain
) -> None:
    for number in (1, 2):
        post_webhook(customer_message(channel, message_id=f"m-{number}", text=f"part {number}"))
    client = APIClient()
    DURING_FIRST_CALL.append(
        lambda: client.post(
            WEBHOOK_URL,
            data=customer_message(channel, message_id="m-3", text="part 3"),
            format="json",
            headers={"x-chatbot_auth_token": f"Bearer {burst_bot.plain_secret}"},
        )
    )
    dropped = metrics.BURST_GENERATIONS_DROPPED._value.get()
    _quiet()
    drain()
    assert receiver.requests == []  # generated, dropped: m-3 came in meanwhile
    assert len(CALLS) == 1
    assert metrics.BURST_GENERATIONS_DROPPED._value.get() == dropped + 1

    _quiet()
    drain()
    assert len(receiver.requests) == 1
    assert receiver.requests[0].json["answers"] == ["m-1", "m-2", "m-3"]
    assert len(CALLS) == 2
    assert [item["text"] for item in CALLS[1] if item["role"] == "USER"] == ["part 1", "part 2", "part 3"]
    assert set(Message.objects.filter(role=Message.Role.USER).values_list("reply_state", flat=True)) == {"replied"}
    _dialogue_counts_hold()


def test_the_longest_wait_answers_a_customer_who_keeps_writing(
    burst_bot, channel, post_webhook, receiver: ChannelReceiver, drain: Drain
) -> None:
    burst_bot.burst_quiet_ms = 5000
    burst_bot.burst_max_wait_ms = 400
    burst_bot.save()
    started = time.monotonic()
    number = 0
    while time.monotonic() - started < 0.5:
        number += 1
        post_webhook(customer_message(channel, message_id=f"m-{number}"))
        time.sleep(0.05)
    drain()  # never quiet for 5 s, but the first message waited 400 ms: answered now
    assert len(receiver.requests) == 1
    assert receiver.requests[0].json["answers"] == [f"m-{n}" for n in range(1, number + 1)]


def test_a_pause_cancels_the_pending_burst(burst_bot, channel, post_webhook, receiver, drain) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from dialogues.store.handoff import dialogue_take_over

    for number in (1, 2):
        post_webhook(customer_message(channel, message_id=f"m-{number}"))
    drain()
    dialogue = Dialogue.objects.get()
    dialogue_take_over(dialogue_id=dialogue.pk, until=timezone.now() + timedelta(minutes=5))
    _quiet()
    drain()
    assert receiver.requests == [] and CALLS == []
    assert set(Message.objects.filter(role=Message.Role.USER).values_list("reply_state", flat=True)) == {"paused"}


def test_an_llm_that_fails_for_good_marks_every_message_of_the_burst_failed(
    burst_bot, channel, post_webhook, receiver, drain, settings
) -> None:
    settings.LLM_BACKEND = "worker.tests.test_burst.failing_llm"
    for number in (1, 2, 3):
        post_webhook(customer_message(channel, message_id=f"m-{number}"))
    _quiet()
    drain()
    assert receiver.requests == [] and len(CALLS) == 1
    assert list(Message.objects.filter(role=Message.Role.USER).values_list("reply_state", flat=True)) == ["failed"] * 3
    _dialogue_counts_hold()


def test_each_is_the_default_and_answers_every_message(bot, channel, post_webhook, receiver, drain) -> None:
    assert bot.reply_policy == ChatBot.ReplyPolicy.EACH
    for number in (1, 2, 3):
        post_webhook(customer_message(channel, message_id=f"m-{number}"))
    drain()
    assert [r.json["in_reply_to"] for r in receiver.requests] == ["m-1", "m-2", "m-3"]
    assert all("answers" not in r.json for r in receiver.requests)


def test_a_duplicate_of_a_burst_message_says_which_reply_answered_it(
    burst_bot, channel, post_webhook, receiver, drain
) -> None:
    for number in (1, 2):
        post_webhook(customer_message(channel, message_id=f"m-{number}"))
    _quiet()
    drain()
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    for number in (1, 2):
        body = post_webhook(customer_message(channel, message_id=f"m-{number}")).json()
        assert body["duplicate"] is True and body["replied"] is True and body["ignored"] is False
        assert body["reply_message_id"] == reply.message_id and body["delivery"] == "delivered"
