"""Races through the real server: duplicates and many first messages at the same moment.
The server stores and answers; the worker, run here after the requests, replies."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from channels_app.tests.factories import ChannelFactory
from core.caching import lookup_caches_clear
from devtools.receiver import ChannelReceiver
from dialogues.models import Dialogue, Message
from tests.fault.conftest import fire_together, post_webhook
from tests.support.live_server import LiveServer
from worker.loop import Worker

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _worker_pass() -> None:
    """The worker, in this process, until nothing is due."""
    lookup_caches_clear()
    worker = Worker(threads=8, poll_ms=5)
    try:
        worker.drain(timeout_s=60)
    finally:
        worker.close()


def test_twenty_identical_webhooks_store_one_copy_and_send_one_reply(
    fault_server: LiveServer, receiver: ChannelReceiver
) -> None:
    channel = ChannelFactory(url=receiver.url)
    secret = channel.chat_bot.plain_secret
    body = {"message_id": "same-moment-1", "chat_id": str(channel.pk), "text": "Hi!", "message_sender": "customer"}

    responses = fire_together(20, lambda _: post_webhook(fault_server, secret, body))

    assert [getattr(r, "status_code", r) for r in responses] == [200] * 20
    assert sum(1 for r in responses if not r.json()["duplicate"]) == 1
    assert Dialogue.objects.filter(channel=channel).count() == 1
    assert Message.objects.filter(message_id="same-moment-1").count() == 1
    assert Dialogue.objects.get(channel=channel).message_count == 2

    _worker_pass()
    _worker_pass()
    replies = Message.objects.filter(role=Message.Role.ASSISTANT, in_reply_to="same-moment-1")
    assert replies.count() == 1
    # Give a stray second delivery time to arrive before counting.
    receiver.wait_for(1)
    time.sleep(0.5)
    assert len(receiver.requests) == 1
    assert receiver.requests[0].json["in_reply_to"] == "same-moment-1"
    assert receiver.requests[0].json["message_id"] == replies.get().message_id


@pytest.mark.slow
def test_64_concurrent_messages_into_one_dialogue_are_all_stored_in_time_order(
    fault_server: LiveServer, receiver: ChannelReceiver
) -> None:
    channel = ChannelFactory(url=receiver.url)
    secret = channel.chat_bot.plain_secret

    def send(i: int):  # type: ignore[no-untyped-def]
        body = {
            "message_id": f"burst-{i}",
            "chat_id": str(channel.pk),
            "text": f"msg {i}",
            "message_sender": "customer",
        }
        return post_webhook(fault_server, secret, body, timeout=60)

    responses = fire_together(64, send)

    assert [getattr(r, "status_code", r) for r in responses] == [200] * 64
    _worker_pass()
    dialogue = Dialogue.objects.get(channel=channel)
    stored = list(Message.objects.filter(dialogue=dialogue).order_by("created_at", "id"))
    assert len(stored) == 128
    users = {m.message_id: m for m in stored if m.role == Message.Role.USER}
    replies = [m for m in stored if m.role == Message.Role.ASSISTANT]
    assert set(users) == {f"burst-{i}" for i in range(64)}
    assert sorted(r.in_reply_to for r in replies) == sorted(users)
    # One consistent order by time: created_at never goes backwards in the stored order,
    # and every reply comes after the message it answers.
    times = [m.created_at for m in stored]
    assert times == sorted(times)
    position = {m.pk: i for i, m in enumerate(stored)}
    for reply in replies:
        assert position[reply.pk] > position[users[reply.in_reply_to].pk]
    dialogue.refresh_from_db()
    assert dialogue.message_count == 128
    # Stamped when the last message reserved its place, just before it was stored.
    assert abs(dialogue.last_message_at - max(m.created_at for m in users.values())) < timedelta(seconds=5)
    # One chat: its replies reach the channel in the order of the messages' positions.
    in_order = [m.message_id for m in sorted(users.values(), key=lambda m: m.seq)]
    assert [r.json["in_reply_to"] for r in receiver.requests] == in_order


@pytest.mark.slow
def test_first_messages_of_many_new_dialogues_at_the_same_moment(
    fault_server: LiveServer, receiver: ChannelReceiver
) -> None:
    # Eight brand-new dialogues, eight first messages each, all at once: every racing
    # dialogue upsert must end with the one dialogue, never an error.
    first = ChannelFactory(url=receiver.url)
    channels = [first] + [ChannelFactory(url=receiver.url, chat_bot=first.chat_bot) for _ in range(7)]
    secret = first.chat_bot.plain_secret

    def send(i: int):  # type: ignore[no-untyped-def]
        channel = channels[i % 8]
        body = {"message_id": f"first-{i}", "chat_id": str(channel.pk), "text": "hi", "message_sender": "customer"}
        return post_webhook(fault_server, secret, body, timeout=60)

    responses = fire_together(64, send)

    assert [getattr(r, "status_code", r) for r in responses] == [200] * 64
    assert Dialogue.objects.filter(chat_bot=first.chat_bot).count() == 8
    _worker_pass()
    for channel in channels:
        dialogue = Dialogue.objects.get(channel=channel)
        assert Message.objects.filter(dialogue=dialogue).count() == 16
        assert dialogue.message_count == 16
    assert sorted(r.json["in_reply_to"] for r in receiver.requests) == sorted(f"first-{i}" for i in range(64))
