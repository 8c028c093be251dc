"""A channel that fails: the webhook still answers 200 at once and keeps the message; the
worker's attempt fails and the reply stays owed; `deliver_pending`, run as the operator runs
it, delivers it exactly once when the channel is back."""

from __future__ import annotations

import pytest
from django.test import override_settings

from channels_app.models import DeliveryState
from channels_app.tests.factories import ChannelFactory
from core.caching import lookup_caches_clear
from devtools.embedded_mongo import free_port
from devtools.receiver import ChannelReceiver, Reply
from dialogues.models import Message
from tests.fault.conftest import manage, post_webhook, receiver_on_port
from tests.support.live_server import LiveServer
from worker.loop import Worker

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _worker_pass() -> None:
    """The worker, in this process, until nothing is due; channels get the fault suite's
    short attempts (half a second), as fault_server's settings say."""
    lookup_caches_clear()
    worker = Worker(threads=4, poll_ms=5)
    try:
        with override_settings(CHANNEL_CONNECT_TIMEOUT_S=0.5, CHANNEL_ATTEMPT_TIMEOUT_S=0.5):
            worker.drain(timeout_s=30)
    finally:
        worker.close()


def _send_and_expect_kept_reply(server: LiveServer, channel, message_id: str) -> Message:  # type: ignore[no-untyped-def]
    body = {"message_id": message_id, "chat_id": str(channel.pk), "text": "Where is my order?",
            "message_sender": "customer"}  # fmt: skip
    response = post_webhook(server, channel.chat_bot.plain_secret, body)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "Message processed successfully"
    assert response.json()["reply_pending"] is True
    assert Message.objects.filter(message_id=message_id, role=Message.Role.USER).count() == 1

    _worker_pass()
    reply = Message.objects.get(role=Message.Role.ASSISTANT, in_reply_to=message_id)
    assert reply.text
    assert reply.delivery_state == DeliveryState.FAILED
    assert reply.delivery_attempts == 1
    assert reply.next_attempt_at is not None
    assert reply.delivered_at is None
    return reply


def _deliver_pending_once() -> None:
    result = manage("deliver_pending")
    assert result.returncode == 0, result.stdout + result.stderr


def _assert_delivered_exactly_once(receiver: ChannelReceiver, before: int, reply: Message) -> None:
    after_recovery = receiver.requests[before:]
    assert len(after_recovery) == 1
    assert after_recovery[0].json["message_id"] == reply.message_id
    assert after_recovery[0].json["in_reply_to"] == reply.in_reply_to
    assert after_recovery[0].headers["webhook-id"] == reply.message_id
    reply.refresh_from_db()
    assert reply.delivery_state == DeliveryState.DELIVERED
    # A second run finds nothing left to do.
    _deliver_pending_once()
    assert len(receiver.requests) == before + 1


def test_channel_answering_503_keeps_the_reply_until_deliver_pending(
    fault_server: LiveServer, receiver: ChannelReceiver
) -> None:
    channel = ChannelFactory(url=receiver.url)
    receiver.default = Reply(status=503)
    reply = _send_and_expect_kept_reply(fault_server, channel, "ch-503")
    assert reply.last_status_code == 503
    assert len(receiver.requests) == 1

    receiver.default = Reply(status=200)
    before = len(receiver.requests)
    _deliver_pending_once()
    _assert_delivered_exactly_once(receiver, before, reply)


def test_channel_timing_out_keeps_the_reply_until_deliver_pending(
    fault_server: LiveServer, receiver: ChannelReceiver
) -> None:
    channel = ChannelFactory(url=receiver.url)
    # The attempt is bounded at 0.5 s; the channel takes longer than that.
    receiver.default = Reply(delay_s=1.5)
    reply = _send_and_expect_kept_reply(fault_server, channel, "ch-timeout")
    assert "timed out" in reply.last_error.lower()

    receiver.default = Reply()
    before = len(receiver.requests)
    _deliver_pending_once()
    _assert_delivered_exactly_once(receiver, before, reply)


def test_channel_down_keeps_the_reply_until_deliver_pending(fault_server: LiveServer) -> None:
    down_port = free_port()  # nothing listens there until the channel "comes back"
    channel = ChannelFactory(url=f"http://127.0.0.1:{down_port}/hook")
    reply = _send_and_expect_kept_reply(fault_server, channel, "ch-down")
    assert reply.last_status_code is None
    assert reply.last_error

    receiver = receiver_on_port(down_port)
    try:
        _deliver_pending_once()
        _assert_delivered_exactly_once(receiver, 0, reply)
    finally:
        receiver.stop()
