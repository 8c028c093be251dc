"""The dashboard's 24-hour chart keeps a failure in the hour it happened, whether the reply
got through later or not, counted live or recounted by `dashboard_rebuild`."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from channels_app.models import DeliveryState
from devtools.receiver import ChannelReceiver, Reply
from dialogues.models import Message
from dialogues.selectors_dashboard import dashboard_summary
from dialogues.store.activity import activity_collection, activity_rebuild, hour_start
from dialogues.tests.conftest import customer_message
from dialogues.tests.factories import DialogueFactory, MessageFactory

pytestmark = pytest.mark.django_db


def failures_by_hour() -> dict[Any, int]:
    return {h.hour: h.failures for h in dashboard_summary(now=timezone.now()).hours if h.failures}


def test_an_outage_stays_on_the_chart_once_the_reply_got_through(
    channel: Any, post_webhook: Any, receiver: ChannelReceiver, drain: Callable[[], None]
) -> None:
    activity_collection().delete_many({})  # not a model's collection: earlier tests' hours stay
    receiver.then(Reply(status=503))
    receiver.then(Reply(status=503))
    with override_settings(DELIVERY_RETRY_BASE_S=0.01, DELIVERY_RETRY_MAX_S=0.01):
        assert post_webhook(customer_message(channel, message_id="m-1")).status_code == 200
        for _ in range(50):
            drain()
            if Message.objects.get(in_reply_to="m-1").delivery_state == DeliveryState.DELIVERED:
                break
            time.sleep(0.02)
    reply = Message.objects.get(in_reply_to="m-1")
    assert reply.delivery_state == DeliveryState.DELIVERED and reply.delivery_attempts == 3
    hour = hour_start(reply.created_at)
    assert failures_by_hour() == {hour: 2}  # counted live, as the attempts failed

    activity_rebuild(hours=24)  # recounted from the messages: the same
    assert failures_by_hour() == {hour: 2}


def test_the_recount_keeps_a_failure_in_the_hour_it_happened() -> None:
    activity_collection().delete_many({})
    dialogue = DialogueFactory()
    now = timezone.now()
    earlier = now - timedelta(hours=3)
    # Stored three hours ago; two attempts failed then, the third went through an hour later.
    MessageFactory(
        dialogue=dialogue, role=Message.Role.ASSISTANT, in_reply_to="q-1", created_at=earlier,
        delivery_state=DeliveryState.DELIVERED, delivery_attempts=3, delivered_at=earlier + timedelta(hours=1),
    )  # fmt: skip
    # Still failing (one attempt so far), and dead after four.
    MessageFactory(
        dialogue=dialogue, role=Message.Role.ASSISTANT, in_reply_to="q-2", created_at=earlier,
        delivery_state=DeliveryState.FAILED, delivery_attempts=1,
    )  # fmt: skip
    MessageFactory(
        dialogue=dialogue, role=Message.Role.ASSISTANT, in_reply_to="q-3", created_at=now,
        delivery_state=DeliveryState.DEAD, delivery_attempts=4,
    )  # fmt: skip
    activity_rebuild(hours=24, now=now)
    assert failures_by_hour() == {hour_start(earlier): 3, hour_start(now): 4}
