"""An operator takes a chat over while the bot still owes it replies: through the real worker
(in this process) and a real local receiver playing the channel. Every bot reply not yet
delivered is cancelled and never sent (even by a worker that already holds it); a reply whose
POST is in flight when the take-over lands is recorded as what happened to it; the operator's
messages reach the chat in their order."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from channels_app.models import Channel
from devtools.receiver import ChannelReceiver, Reply
from dialogues.models import Dialogue, Message
from dialogues.services_operators import dialogue_pause
from dialogues.store.collections import dialogues_collection, messages_collection
from dialogues.store.recovery import due_later_make_now
from dialogues.tests.conftest import customer_message
from worker.loop import Worker

pytestmark = pytest.mark.django_db

Drain = Callable[[], None]


def _due_now() -> None:
    dialogues_collection().update_many({"work_due_at": {"$exists": True}}, {"$set": {"work_due_at": timezone.now()}})


def _bot_replies() -> dict[str, Message]:
    return {m.in_reply_to or "": m for m in Message.objects.filter(role=Message.Role.ASSISTANT)}


def _wait_until(condition: Callable[[], Any], *, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@override_settings(WORKER_BREAKER_THRESHOLD=100)
def test_take_over_while_the_channel_is_down_cancels_the_owed_bot_replies(
    admin_client: Client, api_client: APIClient, channel: Channel, post_webhook, receiver: ChannelReceiver, drain: Drain
) -> None:
    # The channel is down: the reply to m-1 dies (one attempt allowed), the reply to m-2 fails
    # and is owed, m-3 waits behind it for its reply to be generated.
    receiver.default = Reply(status=503)
    for number, attempts in ((1, 1), (2, 10)):
        with override_settings(DELIVERY_MAX_ATTEMPTS=attempts):
            post_webhook(customer_message(channel, message_id=f"m-{number}", text=f"question {number}"))
            _due_now()
            drain()
    post_webhook(customer_message(channel, message_id="m-3", text="question 3"))
    _due_now()
    drain()
    replies = _bot_replies()
    assert replies["m-1"].delivery_state == "dead" and replies["m-2"].delivery_state == "failed"
    assert Message.objects.get(message_id="m-3").reply_state == "awaiting"
    attempted = len(receiver.requests)

    # An operator takes over in the admin and writes twice.
    dialogue = Dialogue.objects.get(channel=channel)
    take_over = reverse("admin:dialogues_dialogue_take_over", args=[dialogue.pk])
    assert admin_client.post(take_over).status_code == 302
    for text in ("Ann here, sorry for the wait.", "Your order ships today."):
        response = api_client.post(f"/api/dialogues/{dialogue.pk}/messages", {"text": text}, format="json")
        assert response.status_code == 201, response.content

    # The channel is back and the operator asks for delivery now.
    receiver.default = Reply(status=200)
    due_later_make_now()
    drain()
    _due_now()
    drain()

    sent = receiver.requests[attempted:]
    assert [(r.json["role"], r.json["text"]) for r in sent] == [
        ("EMPLOYEE", "Ann here, sorry for the wait."),
        ("EMPLOYEE", "Your order ships today."),
    ]
    replies = _bot_replies()
    assert {key: reply.delivery_state for key, reply in replies.items()} == {"m-1": "cancelled", "m-2": "cancelled"}
    assert Message.objects.get(message_id="m-3").reply_state == "paused"

    # The API and the admin transcript say so.
    history = api_client.get(f"/api/dialogues/{dialogue.pk}/messages").json()["message_list"]
    assert sorted(m["delivery_state"] for m in history if m["role"] == "ASSISTANT") == ["cancelled", "cancelled"]
    transcript = admin_client.get(reverse("admin:dialogues_dialogue_transcript", args=[dialogue.pk])).content.decode()
    assert transcript.count("state-cancelled") == 2
    assert "the bot is answering" not in transcript
    # So does the webhook, to a channel that sends m-2 again.
    again = post_webhook(customer_message(channel, message_id="m-2", text="question 2")).json()
    assert again["duplicate"] is True and again["delivery"] == "cancelled"


def _worker_running(worker: Worker) -> threading.Thread:
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    return runner


@pytest.mark.parametrize(("status", "state"), [(200, "delivered"), (503, "cancelled")])
def test_a_stored_reply_in_flight_when_the_take_over_lands_is_recorded_as_what_happened(
    channel: Channel, post_webhook, receiver: ChannelReceiver, drain: Drain, status: int, state: str
) -> None:
    receiver.then(Reply(status=503))
    post_webhook(customer_message(channel, message_id="m-1"))
    drain()
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert reply.delivery_state == "failed"

    # Its retry is on its way to the channel (held there) when the operator takes over.
    release = threading.Event()
    receiver.then(Reply(status=status, release=release))
    Message.objects.filter(pk=reply.pk).update(next_attempt_at=None)
    _due_now()
    worker = Worker(threads=2, poll_ms=5)
    runner = _worker_running(worker)
    try:
        _wait_until(lambda: len(receiver.requests) == 2)
        dialogue_pause(dialogue=Dialogue.objects.get(pk=reply.dialogue_id))
        assert Message.objects.get(pk=reply.pk).delivery_state == "cancelled"
        release.set()
        _wait_until(lambda: Message.objects.get(pk=reply.pk).delivery_attempts == 2)
    finally:
        release.set()
        worker.stop(wait_s=5)
        runner.join(10)
    reply.refresh_from_db()
    # Accepted by the channel: delivered (the customer has it). Refused: cancelled, for good.
    assert reply.delivery_state == state
    Message.objects.filter(pk=reply.pk).update(next_attempt_at=None)
    _due_now()
    drain()
    assert len(receiver.requests) == 2


@pytest.mark.parametrize(("status", "state"), [(200, "delivered"), (503, "cancelled")])
def test_a_new_reply_in_flight_when_the_take_over_lands_is_recorded_as_what_happened(
    channel: Channel, post_webhook, receiver: ChannelReceiver, drain: Drain, status: int, state: str
) -> None:
    release = threading.Event()
    receiver.then(Reply(status=status, release=release))
    post_webhook(customer_message(channel, message_id="m-1"))
    _due_now()
    worker = Worker(threads=2, poll_ms=5)
    runner = _worker_running(worker)
    try:
        _wait_until(lambda: len(receiver.requests) == 1)
        dialogue_pause(dialogue=Dialogue.objects.get(channel=channel))
        release.set()
        _wait_until(lambda: Message.objects.filter(role=Message.Role.ASSISTANT).exists())
    finally:
        release.set()
        worker.stop(wait_s=5)
        runner.join(10)
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert reply.delivery_state == state and reply.delivery_attempts == 1
    _due_now()
    drain()
    assert len(receiver.requests) == 1  # never sent again


def test_a_reply_generated_while_the_take_over_lands_is_never_sent(
    channel: Channel, post_webhook, receiver: ChannelReceiver, drain: Drain, monkeypatch
) -> None:
    import worker.tasks

    post_webhook(customer_message(channel, message_id="m-1"))
    prepare = worker.tasks.llm_call_prepare

    def slow_llm(**kwargs: Any) -> Any:
        # The operator takes over while the LLM is still writing the reply.
        dialogue_pause(dialogue=Dialogue.objects.get(channel=channel))
        return prepare(**kwargs)

    monkeypatch.setattr(worker.tasks, "llm_call_prepare", slow_llm)
    _due_now()
    drain()
    assert receiver.requests == []
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert reply.delivery_state == "cancelled" and reply.delivery_attempts == 0
    assert Message.objects.get(message_id="m-1").reply_state == "paused"


def test_a_worker_that_read_an_owed_reply_before_the_take_over_never_sends_it(
    channel: Channel, post_webhook, receiver: ChannelReceiver, drain: Drain, monkeypatch
) -> None:
    import worker.pipeline

    receiver.then(Reply(status=503))
    post_webhook(customer_message(channel, message_id="m-1"))
    drain()
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    Message.objects.filter(pk=reply.pk).update(next_attempt_at=None)
    window = worker.pipeline.dialogue_window

    def read_then_taken_over(**kwargs: Any) -> Any:
        docs = window(**kwargs)  # the holder has the reply in hand, owed
        dialogue_pause(dialogue=Dialogue.objects.get(channel=channel))
        return docs

    monkeypatch.setattr(worker.pipeline, "dialogue_window", read_then_taken_over)
    _due_now()
    drain()
    assert len(receiver.requests) == 1  # only the first, failed attempt
    reply.refresh_from_db()
    assert reply.delivery_state == "cancelled" and reply.delivery_attempts == 1


def test_a_message_inserted_after_the_take_overs_update_gets_no_reply(
    channel: Channel, post_webhook, receiver: ChannelReceiver, drain: Drain
) -> None:
    """Reserved before the take-over, stored after its update ran (an insert on its way):
    the worker finds it before the take-over's position and answers nothing."""
    post_webhook(customer_message(channel, message_id="m-1"))
    dialogue = Dialogue.objects.get(channel=channel)
    dialogue_pause(dialogue=dialogue)
    # As if the take-over's update had run before this message's insert landed.
    messages_collection().update_one({"message_id": "m-1"}, {"$set": {"reply_state": "awaiting"}})
    _due_now()
    drain()
    assert receiver.requests == []
    assert Message.objects.get(message_id="m-1").reply_state == "paused"
    assert not Message.objects.filter(role=Message.Role.ASSISTANT, delivery_state="delivered").exists()


def test_a_paused_chat_never_says_the_bot_is_answering(
    admin_client: Client, api_client: APIClient, channel: Channel, post_webhook, drain: Drain
) -> None:
    post_webhook(customer_message(channel, message_id="m-0"))
    drain()
    dialogue = Dialogue.objects.get(channel=channel)
    transcript = reverse("admin:dialogues_dialogue_transcript", args=[dialogue.pk])
    # A reply owed, then an operator's message pauses the bot (its bot's setting): the earlier
    # message is still answered later, but the chat is paused, not "answering".
    post_webhook(customer_message(channel, message_id="m-1"))
    assert api_client.post(f"/api/dialogues/{dialogue.pk}/messages", {"text": "Hi"}, format="json").status_code == 201
    content = admin_client.get(transcript).content.decode()
    assert "the bot is answering" not in content and "not answered yet: the bot is paused in this chat" in content
    # A take-over: no reply will come.
    assert admin_client.post(reverse("admin:dialogues_dialogue_take_over", args=[dialogue.pk])).status_code == 302
    drain()
    content = admin_client.get(transcript).content.decode()
    assert "the bot is answering" not in content and "not answered: the bot was paused" in content
