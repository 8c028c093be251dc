"""Typing events through the real webhook and the real worker (in this process), against a real
local receiver playing the channel: signed like replies, before the reply, `off` when no reply
comes after all, throttled per chat, and never in a reply's way (no retry, no breaker)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone
from prometheus_client import REGISTRY
from rest_framework.test import APIClient
from standardwebhooks import Webhook

from channels_app.models import Channel
from channels_app.tests.factories import ChannelFactory
from chatbots.models import ChatBot
from devtools.receiver import ChannelReceiver, ReceivedRequest, Reply
from dialogues.models import Dialogue, Message
from dialogues.services_operators import dialogue_pause
from dialogues.store.collections import dialogues_collection
from dialogues.tests.conftest import customer_message
from worker.typing import typing_idle

pytestmark = pytest.mark.django_db

Drain = Callable[[], None]
# Long enough for the typing sender to post `on` before the answer comes: an `on` still queued
# when its chat is answered is dropped (never shown after the reply).
LLM_DELAY_MS = 300


def failing_after_a_moment(history: list[dict[str, str]]) -> str:
    """An LLM_BACKEND that fails once its `on` has had time to go out."""
    time.sleep(LLM_DELAY_MS / 1000)
    raise RuntimeError("the LLM is down")


@pytest.fixture
def typing_channel(bot: ChatBot, receiver: ChannelReceiver) -> Channel:
    return ChannelFactory(chat_bot=bot, url=receiver.url, typing_events=True)


def _due_now() -> None:
    dialogues_collection().update_many({"work_due_at": {"$exists": True}}, {"$set": {"work_due_at": timezone.now()}})


def _settle(drain: Drain) -> None:
    _due_now()
    drain()
    assert typing_idle(timeout_s=10)


def _typing_counted(outcome: str) -> float:
    return REGISTRY.get_sample_value("chatbots_typing_events_total", {"outcome": outcome}) or 0.0


def _verifies(channel: Channel, request: ReceivedRequest) -> bool:
    Webhook(channel.signing_secret).verify(request.body, request.headers)  # raises if forged
    return True


@override_settings(LLM_MOCK_DELAY_MS=LLM_DELAY_MS)
def test_a_reply_is_preceded_by_a_signed_typing_on_for_its_chat(
    typing_channel: Channel, post_webhook, receiver: ChannelReceiver, drain: Drain
) -> None:
    sent_before = _typing_counted("sent")
    post_webhook(customer_message(typing_channel, message_id="m-1"))
    _settle(drain)

    typing, reply = receiver.requests
    assert typing.json == {"type": "typing", "chat_id": str(typing_channel.pk), "state": "on"}
    assert reply.json["type"] == "message" and reply.json["in_reply_to"] == "m-1"
    assert reply.json["chat_id"] == typing.json["chat_id"]
    # Signed and authenticated as replies are, under an id of its own.
    assert _verifies(typing_channel, typing)
    assert typing.headers["x-chat_auth_token"] == f"Bearer {typing_channel.settings.token}"
    assert typing.headers["webhook-id"].startswith("typing-")
    assert typing.headers["webhook-id"] != reply.headers["webhook-id"]
    assert _typing_counted("sent") == sent_before + 1
    # The reply ended it: no `off` follows.
    drain()
    assert typing_idle() and len(receiver.requests) == 2


@override_settings(LLM_BACKEND=f"{__name__}.failing_after_a_moment", LLM_MAX_ATTEMPTS=1)
def test_typing_off_when_the_llm_gives_up_without_a_fallback(
    typing_channel: Channel, post_webhook, receiver: ChannelReceiver, drain: Drain
) -> None:
    post_webhook(customer_message(typing_channel, message_id="m-1"))
    _settle(drain)

    assert Message.objects.get(message_id="m-1").reply_state == "failed"
    assert [r.json for r in receiver.requests] == [
        {"type": "typing", "chat_id": str(typing_channel.pk), "state": "on"},
        {"type": "typing", "chat_id": str(typing_channel.pk), "state": "off"},
    ]
    off = receiver.requests[1]
    assert _verifies(typing_channel, off)
    assert off.headers["webhook-id"] not in {receiver.requests[0].headers["webhook-id"]}


def test_typing_off_when_the_chat_is_taken_over_while_the_answer_is_written(
    typing_channel: Channel, post_webhook, receiver: ChannelReceiver, drain: Drain, monkeypatch
) -> None:
    import worker.tasks

    post_webhook(customer_message(typing_channel, message_id="m-1"))
    prepare = worker.tasks.llm_call_prepare

    def taken_over_while_writing(**kwargs: Any) -> Any:
        # The customer sees the bot typing; then an operator takes the chat over.
        receiver.wait_for(1, timeout=5)
        dialogue_pause(dialogue=Dialogue.objects.get(channel=typing_channel))
        return prepare(**kwargs)

    monkeypatch.setattr(worker.tasks, "llm_call_prepare", taken_over_while_writing)
    _settle(drain)

    assert Message.objects.get(role=Message.Role.ASSISTANT).delivery_state == "cancelled"
    assert [(r.json["type"], r.json.get("state")) for r in receiver.requests] == [("typing", "on"), ("typing", "off")]
    assert all(_verifies(typing_channel, r) for r in receiver.requests)


@override_settings(LLM_MOCK_DELAY_MS=LLM_DELAY_MS)
def test_at_most_one_typing_on_per_chat_every_five_seconds(
    bot: ChatBot, post_webhook, receiver: ChannelReceiver, drain: Drain, monkeypatch
) -> None:
    import worker.typing

    channel = ChannelFactory(chat_bot=bot, url=receiver.url, typing_events=True)

    def ask(message_id: str, chat: str) -> None:
        post_webhook(customer_message(channel, message_id=message_id, chat_id=chat, channel_id=str(channel.pk)))
        _settle(drain)

    ask("m-1", "chat-a")
    ask("m-2", "chat-a")  # within 5 s of the first: no second `on`
    ask("m-3", "chat-b")  # another chat: its own `on`
    monkeypatch.setattr(worker.typing, "TYPING_ON_INTERVAL_S", 0.0)  # as if 5 s had passed
    ask("m-4", "chat-a")

    typing = [r.json for r in receiver.typing_events()]
    assert [(t["chat_id"], t["state"]) for t in typing] == [("chat-a", "on"), ("chat-b", "on"), ("chat-a", "on")]
    replies = receiver.replies()
    assert [(r.json["chat_id"], r.json["in_reply_to"]) for r in replies] == [
        ("chat-a", "m-1"),
        ("chat-a", "m-2"),
        ("chat-b", "m-3"),
        ("chat-a", "m-4"),
    ]


@override_settings(LLM_MOCK_DELAY_MS=LLM_DELAY_MS, WORKER_BREAKER_THRESHOLD=1)
def test_a_channel_that_hangs_on_typing_gets_its_reply_at_once_and_no_retry(
    typing_channel: Channel, post_webhook, receiver: ChannelReceiver, drain: Drain
) -> None:
    release = threading.Event()
    receiver.typing = Reply(release=release, hold_s=10)
    failed_before = _typing_counted("failed")
    try:
        post_webhook(customer_message(typing_channel, message_id="m-1"))
        _due_now()
        drain()
        [typing] = receiver.typing_events()
        [reply] = receiver.replies()
        # The reply went while the typing event hung: it waited on nothing but the LLM.
        assert reply.at - typing.at < 1.5
        assert typing_idle(timeout_s=5)  # the typing POST gave up at its own short deadline
    finally:
        release.set()
    assert _typing_counted("failed") == failed_before + 1
    time.sleep(0.3)
    assert len(receiver.typing_events()) == 1  # never retried
    # Not a delivery: the breaker (open after one failure here) never heard of it.
    typing_channel.refresh_from_db()
    assert typing_channel.consecutive_failures == 0 and typing_channel.breaker_open_until is None
    assert typing_channel.last_delivery_state == "delivered"
    assert Message.objects.get(role=Message.Role.ASSISTANT).delivery_state == "delivered"


@override_settings(LLM_MOCK_DELAY_MS=LLM_DELAY_MS, WORKER_BREAKER_THRESHOLD=1)
def test_a_channel_that_refuses_typing_gets_its_replies_and_no_retry(
    typing_channel: Channel, post_webhook, receiver: ChannelReceiver, drain: Drain, monkeypatch
) -> None:
    import worker.typing

    receiver.typing = Reply(status=500)
    post_webhook(customer_message(typing_channel, message_id="m-1"))
    _settle(drain)
    monkeypatch.setattr(worker.typing, "TYPING_ON_INTERVAL_S", 0.0)
    post_webhook(customer_message(typing_channel, message_id="m-2"))
    _settle(drain)

    # One attempt, never retried; after a failure the channel gets no typing for a while.
    assert [r.json["state"] for r in receiver.typing_events()] == ["on"]
    assert [r.json["in_reply_to"] for r in receiver.replies()] == ["m-1", "m-2"]
    typing_channel.refresh_from_db()
    assert typing_channel.consecutive_failures == 0 and typing_channel.breaker_open_until is None
    assert set(Message.objects.filter(role=Message.Role.ASSISTANT).values_list("delivery_state", flat=True)) == {
        "delivered"
    }


@override_settings(LLM_MOCK_DELAY_MS=LLM_DELAY_MS)
def test_typing_is_skipped_while_the_breaker_is_open(
    typing_channel: Channel, post_webhook, receiver: ChannelReceiver, drain: Drain
) -> None:
    # Open, with its probe due: the reply is the probe, and it goes alone.
    Channel.objects.filter(pk=typing_channel.pk).update(
        consecutive_failures=10, breaker_open_until=timezone.now() - timedelta(seconds=1)
    )
    post_webhook(customer_message(typing_channel, message_id="m-1"))
    _settle(drain)
    assert [r.json["type"] for r in receiver.requests] == ["message"]


@override_settings(LLM_MOCK_DELAY_MS=LLM_DELAY_MS)
def test_without_typing_events_only_messages_are_sent_marked_as_such(
    channel: Channel, api_client: APIClient, post_webhook, receiver: ChannelReceiver, drain: Drain
) -> None:
    assert channel.typing_events is False  # the default
    post_webhook(customer_message(channel, message_id="m-1"))
    _settle(drain)
    dialogue = Dialogue.objects.get(channel=channel)
    response = api_client.post(f"/api/dialogues/{dialogue.pk}/messages", {"text": "Ann here."}, format="json")
    assert response.status_code == 201, response.content
    _settle(drain)

    assert [(r.json["type"], r.json["role"]) for r in receiver.requests] == [
        ("message", "ASSISTANT"),
        ("message", "EMPLOYEE"),
    ]
