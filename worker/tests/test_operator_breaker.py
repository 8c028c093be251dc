"""An operator pushes replies through once a channel is back: a test message that goes through
closes the channel's breaker, "Redeliver now" makes one attempt even while the breaker is open,
and the channel's page shows the breaker with a button to close it. Admin through the test
client; the real worker (in this process) and a real local receiver."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from channels_app.models import Channel
from channels_app.services import channel_test_request
from devtools.receiver import ChannelReceiver, Reply
from dialogues.models import Message
from dialogues.store.collections import dialogues_collection
from dialogues.tests.conftest import customer_message

pytestmark = pytest.mark.django_db

Drain = Callable[[], None]
THRESHOLD = 2


def _breaker_opened(channel: Channel, post_webhook, receiver: ChannelReceiver, drain: Drain) -> Message:
    """The channel fails until its breaker opens (for minutes); one reply is owed."""
    receiver.default = Reply(status=503)
    post_webhook(customer_message(channel, message_id="m-1"))
    for _ in range(THRESHOLD):
        Message.objects.filter(role=Message.Role.ASSISTANT).update(next_attempt_at=None)
        dialogues_collection().update_many({}, {"$set": {"work_due_at": timezone.now()}})
        drain()
    channel.refresh_from_db()
    assert channel.consecutive_failures == THRESHOLD and channel.breaker_open_until > timezone.now() + timedelta(
        minutes=5
    )
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert reply.delivery_state == "failed" and reply.delivery_attempts == THRESHOLD
    return reply


@override_settings(WORKER_BREAKER_THRESHOLD=THRESHOLD, WORKER_BREAKER_COOLDOWN_S=600)
def test_a_test_message_that_goes_through_closes_the_breaker_and_owed_replies_go_now(
    channel: Channel, post_webhook, receiver: ChannelReceiver, drain: Drain
) -> None:
    reply = _breaker_opened(channel, post_webhook, receiver, drain)
    receiver.default = Reply(status=200)
    channel_test_request(channel_ids=[channel.pk])
    drain()  # sends the test message
    channel.refresh_from_db()
    assert channel.last_test_ok is True
    assert channel.consecutive_failures == 0 and channel.breaker_open_until is None
    drain()  # the owed reply is retried now, not at the end of its backoff or the cooldown
    reply.refresh_from_db()
    assert reply.delivery_state == "delivered"
    assert [r.json.get("test", False) for r in receiver.requests[THRESHOLD:]] == [True, False]


@override_settings(WORKER_BREAKER_THRESHOLD=THRESHOLD, WORKER_BREAKER_COOLDOWN_S=600)
def test_redeliver_now_makes_one_attempt_while_the_breaker_is_open_and_says_so(
    admin_client: Client, channel: Channel, post_webhook, receiver: ChannelReceiver, drain: Drain
) -> None:
    reply = _breaker_opened(channel, post_webhook, receiver, drain)
    redeliver = reverse("admin:dialogues_delivery_redeliver", args=[reply.pk])

    # Still down: exactly one attempt per click, never more, and the breaker stays open.
    response = admin_client.post(redeliver, follow=True)
    content = response.content.decode()
    assert "one attempt" in content and "even if the channel&#x27;s breaker is open" in content
    drain()
    reply.refresh_from_db()
    assert reply.delivery_attempts == THRESHOLD + 1 and len(receiver.requests) == THRESHOLD + 1
    Message.objects.filter(pk=reply.pk).update(next_attempt_at=None)
    dialogues_collection().update_many({}, {"$set": {"work_due_at": timezone.now()}})
    drain()
    assert len(receiver.requests) == THRESHOLD + 1  # the request is used up; the breaker holds
    channel.refresh_from_db()
    assert channel.breaker_open_until is not None and channel.breaker_open_until > timezone.now()

    # Back: the next click delivers it, and the success closes the breaker.
    receiver.default = Reply(status=200)
    admin_client.post(redeliver)
    drain()
    reply.refresh_from_db()
    assert reply.delivery_state == "delivered" and len(receiver.requests) == THRESHOLD + 2
    channel.refresh_from_db()
    assert channel.consecutive_failures == 0 and channel.breaker_open_until is None


@override_settings(WORKER_BREAKER_THRESHOLD=THRESHOLD, WORKER_BREAKER_COOLDOWN_S=600)
def test_the_channel_page_shows_the_breaker_and_closes_it(
    admin_client: Client, channel: Channel, post_webhook, receiver: ChannelReceiver, drain: Drain
) -> None:
    reply = _breaker_opened(channel, post_webhook, receiver, drain)
    page = admin_client.get(reverse("admin:channels_app_channel_change", args=[channel.pk])).content.decode()
    assert 'id="connect-breaker-state" data-open="true"' in page
    assert f"open until {channel.breaker_open_until:%Y-%m-%d %H:%M:%S}" in page
    assert f"({THRESHOLD} failures in a row)" in page
    assert 'id="connect-close-breaker"' in page

    receiver.default = Reply(status=200)
    close = reverse("admin:channels_app_channel_close_breaker", args=[channel.pk])
    response = admin_client.post(close, follow=True)
    assert "Breaker closed" in response.content.decode()
    channel.refresh_from_db()
    assert channel.consecutive_failures == 0 and channel.breaker_open_until is None
    drain()  # the worker retries what the channel is owed now
    reply.refresh_from_db()
    assert reply.delivery_state == "delivered"
    page = admin_client.get(reverse("admin:channels_app_channel_change", args=[channel.pk])).content.decode()
    assert 'data-open="false"' in page and 'id="connect-close-breaker"' not in page


@override_settings(WORKER_BREAKER_THRESHOLD=THRESHOLD, WORKER_BREAKER_COOLDOWN_S=600)
def test_closing_the_breaker_needs_change_channel(
    client: Client, django_user_model, channel: Channel, post_webhook, receiver: ChannelReceiver, drain: Drain
) -> None:
    _breaker_opened(channel, post_webhook, receiver, drain)
    viewer = django_user_model.objects.create_user(username="viewer", password="pw-viewer-1", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_channel"))
    client.force_login(viewer)
    page = client.get(reverse("admin:channels_app_channel_change", args=[channel.pk])).content.decode()
    assert 'data-open="true"' in page and 'id="connect-close-breaker"' not in page
    close = reverse("admin:channels_app_channel_close_breaker", args=[channel.pk])
    assert client.post(close).status_code == 403
    channel.refresh_from_db()
    assert channel.consecutive_failures == THRESHOLD and channel.breaker_open_until is not None
