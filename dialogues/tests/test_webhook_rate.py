"""WEBHOOK_BOT_RATE: webhook requests per bot, counted in MongoDB (shared by every process) and
leased to each process in batches, so the hot path costs a round trip only per batch."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.exceptions import Throttled

from channels_app.tests.factories import ChannelFactory
from chatbots.models import ChatBot
from chatbots.tests.factories import ChatBotFactory
from core import ratelimit
from core.ratelimit import webhook_bot_leases_clear, webhook_bot_rate_check
from dialogues.models import Message
from dialogues.tests.conftest import customer_message

pytestmark = pytest.mark.django_db

NOW = 1_800_000_000.0  # the start of a minute


@pytest.fixture(autouse=True)
def _fresh_leases() -> Iterator[None]:
    webhook_bot_leases_clear()
    yield
    webhook_bot_leases_clear()


def admitted(bot_id: str, times: int, *, now: float = NOW) -> int:
    passed = 0
    for _ in range(times):
        try:
            webhook_bot_rate_check(bot_id, now=now)
        except Throttled:
            continue
        passed += 1
    return passed


@override_settings(WEBHOOK_BOT_RATE="3/minute")
def test_over_the_rate_the_webhook_answers_429_with_retry_after(channel, post_webhook) -> None:
    answers = [post_webhook(customer_message(channel, message_id=f"m-{i}")) for i in range(4)]

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    refused = answers[-1]
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused.json()["detail"].startswith("Too many webhook requests for this bot.")
    assert sorted(Message.objects.values_list("message_id", flat=True)) == ["m-0", "m-1", "m-2"]


@override_settings(WEBHOOK_BOT_RATE="2/minute")
def test_another_bot_is_unaffected(channel, post_webhook, receiver) -> None:
    for i in range(3):
        post_webhook(customer_message(channel, message_id=f"m-{i}"))
    other: ChatBot = ChatBotFactory()
    other_channel = ChannelFactory(chat_bot=other, url=receiver.url)

    response = post_webhook(customer_message(other_channel), secret=other.plain_secret)  # type: ignore[attr-defined]

    assert response.status_code == 200, response.content
    assert post_webhook(customer_message(channel, message_id="m-9")).status_code == 429


@override_settings(WEBHOOK_BOT_RATE="0")
def test_zero_turns_the_limit_off_without_touching_the_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit, "_lease_take", lambda *a, **k: pytest.fail("no database work"))
    assert admitted("bot-a", 50) == 50


@override_settings(WEBHOOK_BOT_RATE="1000/minute")
def test_permits_are_leased_in_batches_one_round_trip_per_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    takes: list[int] = []
    real = ratelimit._lease_take

    def counting(key: str, rate: Any, want: int, now: float) -> int:
        takes.append(want)
        return real(key, rate, want, now)

    monkeypatch.setattr(ratelimit, "_lease_take", counting)

    assert admitted("bot-a", 120) == 120
    assert takes == [50, 50, 50]  # a twentieth of the limit each


@override_settings(WEBHOOK_BOT_RATE="10/minute")
def test_the_count_is_shared_by_processes() -> None:
    assert admitted("bot-a", 6) == 6
    webhook_bot_leases_clear()  # another process: nothing local, the same shared counter

    assert admitted("bot-a", 6) == 4


@override_settings(WEBHOOK_BOT_RATE="100/minute")
def test_never_more_than_the_limit_at_most_the_unused_leases_less() -> None:
    # Process A takes a lease of 5, serves one request and stops; its 4 other permits are lost
    # to the window (the documented accuracy: up to (processes - 1) * (lease - 1) fewer).
    assert admitted("bot-a", 1) == 1
    webhook_bot_leases_clear()
    # Process B: whatever it is asked, the cluster's total stays within the limit.
    assert admitted("bot-a", 200) == 95


@override_settings(WEBHOOK_BOT_RATE="5/minute")
def test_a_new_window_admits_again_and_a_spent_one_costs_no_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    assert admitted("bot-a", 7) == 5
    monkeypatch.setattr(ratelimit, "_lease_take", lambda *a, **k: pytest.fail("the refusal is remembered"))
    assert admitted("bot-a", 20, now=NOW + 30) == 0
    monkeypatch.undo()

    assert admitted("bot-a", 5, now=NOW + 60) == 5


@override_settings(WEBHOOK_BOT_RATE="5/minute")
def test_the_refusal_says_when_the_window_ends() -> None:
    admitted("bot-a", 5)
    with pytest.raises(Throttled) as refused:
        webhook_bot_rate_check("bot-a", now=NOW + 45)
    assert refused.value.wait == 15
