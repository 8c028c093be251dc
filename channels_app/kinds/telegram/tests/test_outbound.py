"""Replies and operators' messages to Telegram: `sendMessage` through `channel_send` and the
real worker, split when long, and Telegram's errors read as retryable or final."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from channels_app.dispatch import channel_send, channel_typing_send, reply_payload
from channels_app.kinds.telegram.progress import parts_sent
from channels_app.kinds.telegram.tests.conftest import BOT_TOKEN
from channels_app.kinds.telegram.tests.fake_bot_api import Answer, FakeBotApi, fixture
from channels_app.kinds.telegram.tests.test_inbound import post_update
from channels_app.models import Channel
from core.caching import lookup_caches_clear
from dialogues.models import Dialogue, Message

pytestmark = pytest.mark.django_db

Drain = Callable[[], None]
CHAT = "1111111"


def send(channel: Channel, text: str, *, key: str | None = None) -> Any:
    # A fresh key unless a test retries: the progress of split replies outlives a test's flush
    # (its collection is no model's).
    key = key or f"reply-{uuid.uuid4()}"
    payload = reply_payload(message_id=key, text=text, chat_id=CHAT, in_reply_to="tg-1")
    return channel_send(channel=channel, payload=payload, idempotency_key=key, log_context={})


def sent_texts(bot_api: FakeBotApi) -> list[str]:
    return [call.body["text"] for call in bot_api.of("sendMessage")]


def test_a_reply_is_sent_by_send_message(channel: Channel, bot_api: FakeBotApi) -> None:
    outcome = send(channel, "Yes, it left the warehouse today.")
    assert outcome.ok and outcome.status_code == 200 and outcome.error == ""
    [call] = bot_api.calls
    assert (call.token, call.method) == (BOT_TOKEN, "sendMessage")
    assert call.body == {"chat_id": 1111111, "text": "Yes, it left the warehouse today."}


def test_a_long_reply_is_sent_in_parts_in_order(channel: Channel, bot_api: FakeBotApi) -> None:
    sentences = [f"Step {i}: do the thing number {i}." for i in range(400)]
    text = " ".join(sentences)
    assert len(text) > 2 * 4096
    assert send(channel, text).ok
    texts = sent_texts(bot_api)
    assert len(texts) == -(-len(text) // 4096) and all(len(t) <= 4096 for t in texts)
    assert " ".join(texts) == text  # cut at sentence ends, in order, nothing lost
    assert all(t.endswith(".") for t in texts)


def test_a_split_reply_that_failed_midway_sends_only_the_rest_on_retry(channel: Channel, bot_api: FakeBotApi) -> None:
    text = "\n".join(f"Line {i} " + " ".join(["word"] * 20) for i in range(300))
    bot_api.then("sendMessage", Answer(200, fixture("answer_send_message.json")), Answer.of("answer_500.json"))
    key = f"reply-{uuid.uuid4()}"
    first = send(channel, text, key=key)
    assert not first.ok and not first.permanent and first.status_code == 500
    assert first.error.startswith("Part 2 of ") and "Internal Server Error" in first.error
    assert parts_sent(key) == 1
    first_texts = sent_texts(bot_api)
    assert len(first_texts) == 2

    bot_api.reset()
    again = send(channel, text, key=key)
    assert again.ok
    rest = sent_texts(bot_api)
    assert rest[0] == first_texts[1]  # the failed part again, never the first
    assert "\n".join([first_texts[0], *rest]) == text

    # A repeat once everything was taken sends nothing more.
    bot_api.reset()
    assert send(channel, text, key=key).ok and bot_api.calls == []


def test_429_is_retried_after_telegrams_retry_after(channel: Channel, bot_api: FakeBotApi) -> None:
    bot_api.then("sendMessage", Answer.of("answer_429.json"))
    outcome = send(channel, "Hello")
    assert not outcome.ok and not outcome.permanent
    assert outcome.status_code == 429 and outcome.retry_after_s == 5.0
    assert outcome.error == "Telegram answered 429: Too Many Requests: retry after 5"


@pytest.mark.parametrize(
    ("answer", "permanent"),
    [
        ("answer_403_blocked.json", True),
        ("answer_400_chat_not_found.json", True),
        ("answer_401.json", True),
        ("answer_500.json", False),
    ],
)
def test_errors_are_final_or_retried(channel: Channel, bot_api: FakeBotApi, answer: str, permanent: bool) -> None:
    bot_api.then("sendMessage", Answer.of(answer))
    outcome = send(channel, "Hello")
    assert not outcome.ok and outcome.permanent is permanent and outcome.retry_after_s is None
    assert outcome.error == f"Telegram answered {fixture(answer)['error_code']}: {fixture(answer)['description']}"
    assert BOT_TOKEN not in outcome.error


def test_an_unreachable_api_is_retried_and_never_shows_the_token(channel: Channel) -> None:
    channel.settings.url = "http://127.0.0.1:9"  # nothing listens there
    outcome = send(channel, "Hello")
    assert not outcome.ok and not outcome.permanent and outcome.status_code is None
    assert BOT_TOKEN not in outcome.error and "Connection failed" in outcome.error


def test_typing_is_a_chat_action_and_off_is_nothing(channel: Channel, bot_api: FakeBotApi) -> None:
    outcome = channel_typing_send(channel=channel, chat_id=CHAT, state="on", log_context={})
    assert outcome is not None and outcome.ok
    assert channel_typing_send(channel=channel, chat_id=CHAT, state="off", log_context={}) is None
    [call] = bot_api.calls
    assert call.method == "sendChatAction" and call.body == {"chat_id": 1111111, "action": "typing"}


# --- through the real worker ------------------------------------------------------------


def deliver_pending() -> str:
    lookup_caches_clear()
    out = StringIO()
    call_command("deliver_pending", stdout=out)
    return out.getvalue()


def test_a_customers_message_is_answered_in_its_chat_by_the_worker(
    channel: Channel, bot_api: FakeBotApi, drain: Drain
) -> None:
    assert post_update(channel, fixture("update_text.json")).status_code == 200
    drain()
    [call] = bot_api.of("sendMessage")
    assert call.token == BOT_TOKEN and call.body["chat_id"] == 1111111
    assert call.body["text"].startswith("Echo (") and call.body["text"].endswith("Hello, is my order shipped?")
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert reply.delivery_state == "delivered" and reply.text == call.body["text"]


def test_an_operators_message_reaches_the_chat_the_same_way(
    channel: Channel, bot_api: FakeBotApi, drain: Drain, api_client: APIClient
) -> None:
    post_update(channel, fixture("update_text.json"))
    drain()
    dialogue = Dialogue.objects.get(channel=channel)
    bot_api.reset()
    response = api_client.post(
        f"/api/dialogues/{dialogue.pk}/messages", {"text": "Hi, Ann from support."}, format="json"
    )
    assert response.status_code == 201, response.content
    drain()
    [call] = bot_api.of("sendMessage")
    assert call.body == {"chat_id": 1111111, "text": "Hi, Ann from support."}
    stored = Message.objects.get(message_id=response.json()["message_id"])
    assert stored.role == Message.Role.EMPLOYEE and stored.delivery_state == "delivered"


def test_the_worker_waits_out_a_429_then_delivers(channel: Channel, bot_api: FakeBotApi, settings: Any) -> None:
    # The worker's own backoff is tiny: only Telegram's retry_after (5 s) can make it wait longer.
    settings.DELIVERY_RETRY_BASE_S = settings.DELIVERY_RETRY_MAX_S = 0.01
    settings.CHANNEL_RETRY_AFTER_CAP_S = 60
    bot_api.then("sendMessage", Answer.of("answer_429.json"))
    post_update(channel, fixture("update_text.json"))
    before = timezone.now()
    deliver_pending()
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert reply.delivery_state == "failed" and reply.delivery_attempts == 1
    assert reply.next_attempt_at is not None and reply.next_attempt_at >= before + timedelta(seconds=5)
    # deliver_pending makes it due now (the operator's "deliver now").
    deliver_pending()
    reply.refresh_from_db()
    assert reply.delivery_state == "delivered" and reply.delivery_attempts == 2
    assert len(bot_api.of("sendMessage")) == 2


def test_a_blocked_bot_is_final_for_the_worker(channel: Channel, bot_api: FakeBotApi) -> None:
    bot_api.then("sendMessage", Answer.of("answer_403_blocked.json"))
    post_update(channel, fixture("update_text.json"))
    deliver_pending()
    deliver_pending()
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert reply.delivery_state == "dead" and reply.delivery_attempts == 1
    assert len(bot_api.of("sendMessage")) == 1


def test_the_token_is_never_logged(create_channel: Any, bot_api: FakeBotApi, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bot_api.then("setWebhook", Answer.of("answer_401.json"))
    channel = Channel.objects.get(pk=create_channel().json()["id"])
    bot_api.then("sendMessage", Answer.of("answer_429.json"), Answer.of("answer_403_blocked.json"))
    send(channel, "Hello")
    send(channel, "Hello")
    send(channel, "x " * 5000)
    channel.settings.url = "http://127.0.0.1:9"
    send(channel, "Hello")
    assert len(bot_api.calls) >= 5 and caplog.records
    logged = caplog.text + " ".join(str(vars(record)) for record in caplog.records)
    assert BOT_TOKEN not in logged and BOT_TOKEN.split(":")[1] not in logged
