"""The channel's own state, written only through channels_app: the breaker, the "last delivery"
note and the requests the worker takes (test messages, owed-wake after a manual close)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from channels_app.breaker import (
    breaker_probe_claim,
    breaker_record,
    breaker_wait_until,
    breakers_probe_now,
    channels_collection,
)
from channels_app.models import Channel
from channels_app.services import (
    channel_breaker_close,
    channel_delivery_note,
    channel_owed_wake_requests_take,
    channel_test_request,
    channel_test_requests_take,
)
from channels_app.tests.factories import ChannelFactory
from core.caching import lookup_caches_clear

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_caches():  # type: ignore[no-untyped-def]
    lookup_caches_clear()
    yield
    lookup_caches_clear()


def _fresh(channel: Channel) -> Channel:
    return Channel.objects.get(pk=channel.pk)


@override_settings(WORKER_BREAKER_THRESHOLD=3, WORKER_BREAKER_COOLDOWN_S=60)
def test_the_breaker_opens_at_the_threshold_and_a_success_closes_it() -> None:
    channel = ChannelFactory()
    for _ in range(2):
        breaker_record(_fresh(channel), ok=False)
    assert breaker_wait_until(_fresh(channel)) is None
    breaker_record(_fresh(channel), ok=False)
    opened = _fresh(channel)
    assert opened.consecutive_failures == 3 and opened.breaker_open_until is not None
    assert breaker_wait_until(opened) is not None

    breaker_record(opened, ok=True)
    closed = _fresh(channel)
    assert closed.consecutive_failures == 0 and closed.breaker_open_until is None
    assert breaker_wait_until(closed) is None


@override_settings(WORKER_BREAKER_THRESHOLD=1)
def test_one_probe_goes_through_an_open_breaker_once_its_time_is_up() -> None:
    channel = ChannelFactory()
    breaker_record(_fresh(channel), ok=False)
    assert breakers_probe_now() == 1
    due = _fresh(channel)
    assert breaker_probe_claim(due) is None  # this caller won the probe
    assert breaker_probe_claim(due) is not None  # the next one looks again shortly


@override_settings(WORKER_BREAKER_THRESHOLD=1)
def test_a_closed_breaker_is_seen_through_a_stale_copy_of_the_channel() -> None:
    channel = ChannelFactory()
    channels_collection().update_one(
        {"_id": channel.pk},
        {"$set": {"consecutive_failures": 4, "breaker_open_until": timezone.now() + timedelta(minutes=5)}},
    )
    stale = _fresh(channel)
    assert channel_breaker_close(channel=stale) is True
    assert breaker_wait_until(stale) is None
    assert channel_owed_wake_requests_take() == [channel.pk]
    assert channel_owed_wake_requests_take() == []


def test_a_test_request_is_taken_once() -> None:
    first, second = ChannelFactory(), ChannelFactory()
    assert channel_test_request(channel_ids=[first.pk, second.pk]) == 2
    assert sorted(channel_test_requests_take()) == sorted([first.pk, second.pk])
    assert channel_test_requests_take() == []


def test_the_last_delivery_note_is_written_when_the_state_changes() -> None:
    channel = ChannelFactory()
    now = timezone.now()
    channel_delivery_note(channel_id=channel.pk, state="failed", when=now)
    assert _fresh(channel).last_delivery_state == "failed"
    # The same state again at once: not written (one write per interval on the delivery path).
    channel_delivery_note(channel_id=channel.pk, state="failed", when=now + timedelta(seconds=1))
    assert _fresh(channel).last_delivery_at == now.replace(microsecond=now.microsecond // 1000 * 1000)
    channel_delivery_note(channel_id=channel.pk, state="delivered", when=now + timedelta(seconds=2))
    assert _fresh(channel).last_delivery_state == "delivered"
