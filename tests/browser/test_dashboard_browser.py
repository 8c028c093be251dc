"""The admin index's health at a glance, in a real browser against the real gunicorn server:
a day of traffic (real webhook messages delivered by the real worker, and earlier hours
written as the webhook and the worker write them), a dead reply, an open breaker. The chart
is the server's own SVG: no script, and nothing fetched from anywhere but the app. The
screenshot lands in test-artifacts/browser/dashboard.png."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import pytest
import requests
from django.conf import settings

from channels_app.models import Channel
from channels_app.tests.factories import ChannelFactory
from chatbots.tests.factories import ChatBotFactory
from core.mongo import mongo_collection
from devtools.receiver import ChannelReceiver
from dialogues.documents import message_document
from dialogues.models import Dialogue, Message
from dialogues.store.activity import activity_collection, activity_rebuild
from tests.support.live_server import LiveServer

PASSWORD = "operator-pass-123"  # the `staff_user` fixture's


def exchange(channel: Channel, *, at: datetime, took_s: float, number: int, state: str = "delivered") -> None:
    """A customer message and its reply, as the webhook and the worker write them (in a
    dialogue of their own, apart from the live messages' one)."""
    dialogue, _ = Dialogue.objects.get_or_create(
        chat_bot_id=channel.chat_bot_id, channel=channel, chat_id=f"history-{channel.pk}"
    )
    dialogue_id = dialogue.pk
    user = message_document(
        dialogue_id=dialogue_id, chat_bot_id=channel.chat_bot_id, channel_id=channel.pk, message_id=f"h-{number}",
        role="USER", text="Hello", created_at=at, seq=1, reply_state="replied",
    )  # fmt: skip
    reply = message_document(
        dialogue_id=dialogue_id, chat_bot_id=channel.chat_bot_id, channel_id=channel.pk, message_id=f"r-{number}",
        role="ASSISTANT", text="Hi", created_at=at, in_reply_to=f"h-{number}", seq=2, delivery_state=state,
    )  # fmt: skip
    if state == "delivered":
        reply["delivered_at"] = at + timedelta(seconds=took_s)
    else:
        reply["delivery_attempts"] = 10
        reply["last_status_code"] = 500
    mongo_collection(Message._meta.db_table).insert_many([user, reply])


@pytest.fixture
def server(django_db_setup: Any) -> Iterator[LiveServer]:
    """Its own server and worker: the session's server may have cached the numbers of earlier
    hours (ADMIN_DASHBOARD_CACHE_S, and a minute for completed hours) before this test wrote
    its history into them."""
    live = LiveServer(db_name=settings.DATABASES["default"]["NAME"], worker=True).start()
    try:
        yield live
    finally:
        live.stop()


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_dashboard_in_a_real_browser(
    page: Any, screenshot: Any, server: LiveServer, receiver: ChannelReceiver, staff_user: Any
) -> None:
    base = server.url
    bot = ChatBotFactory()
    shop = ChannelFactory(chat_bot=bot, url=receiver.url, name="Web shop chat")
    crm = ChannelFactory(chat_bot=bot, url=receiver.url, name="CRM inbox")
    broken = ChannelFactory(chat_bot=bot, url=receiver.url, name="Legacy messenger")

    # The earlier hours: a working day's curve, the CRM slow to accept its replies.
    now = datetime.now(UTC)
    number = 0
    for back in range(1, 24):
        at = now.replace(minute=5, second=0, microsecond=0) - timedelta(hours=back)
        for _ in range(2 + (back * 7) % 9):
            number += 1
            exchange(shop if number % 3 else crm, at=at, took_s=0.4 if number % 3 else 45.0, number=number)
    exchange(broken, at=now - timedelta(hours=3), took_s=0, number=number + 1, state="dead")
    Channel.objects.filter(pk=broken.pk).update(consecutive_failures=7, breaker_open_until=now + timedelta(minutes=10))
    history_in = number + 1
    activity_collection().delete_many({})  # not a model's collection: the test flush keeps it
    activity_rebuild(hours=24)  # written around the app: recounted from the messages

    # This hour: real messages through the webhook, replies delivered by the real worker.
    for live in range(4):
        response = requests.post(
            f"{base}/api/webhook/new_message",
            headers={"x-chatbot_auth_token": f"Bearer {bot.plain_secret}"},
            json={"chat_id": str(shop.pk), "text": "Hi there", "message_sender": "customer", "message_id": f"l-{live}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
    receiver.wait_for(4, timeout=30)

    requested_hosts: set[str] = set()
    page.on("request", lambda request: requested_hosts.add(urlparse(request.url).netloc))
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", staff_user.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#activity-chart")
    # The server keeps the numbers ~10 s: reload until this hour's traffic is in.
    expected_in = str(history_in + 4)
    deadline = time.monotonic() + 20
    while page.inner_text("#total-messages_in b") != expected_in and time.monotonic() < deadline:
        time.sleep(1)
        page.reload()
    assert page.inner_text("#total-messages_in b") == expected_in
    # The dead reply's ten failed attempts, each a failure, as the worker counts them live.
    assert page.inner_text("#total-failures b") == "10"

    chart = page.locator("#activity-chart")
    box = chart.bounding_box()
    assert box is not None and box["width"] > 500 and box["height"] > 100
    assert page.locator("#activity-chart rect.bar").count() == 72
    # Every bar stands on the baseline, its height proportional to its number.
    bars = page.eval_on_selector_all(
        "#activity-chart rect.messages_in",
        "bars => bars.map(b => [b.dataset.value, b.getAttribute('y'), b.getAttribute('height')].map(Number))",
    )
    baselines = {round(y + height, 1) for _, y, height in bars}
    assert len(baselines) == 1, baselines
    scale = {round(height / value, 2) for value, _, height in bars if value}
    assert len(scale) == 1 and bars[-1][0] >= 4, (scale, bars[-1])
    assert page.locator("#backlog-dead td").inner_text() == "1"
    assert page.locator("#open-breakers").get_by_role("link", name="Legacy messenger").count() == 1
    slowest = page.locator("#slowest-channels tbody tr")
    assert slowest.nth(0).inner_text().startswith("CRM inbox")
    assert page.locator("#replies-failing-banner").is_visible()
    screenshot("dashboard")
    assert requested_hosts == {urlparse(base).netloc}, requested_hosts  # nothing from a CDN

    # The banner leads to the dead reply; the breaker's channel to its page.
    page.click("#replies-failing-banner a")
    page.wait_for_selector("#result_list")
    assert "state=dead" in page.url
    assert page.locator("#result_list tbody tr").count() == 1
    page.go_back()
    page.locator("#open-breakers").get_by_role("link", name="Legacy messenger").click()
    page.wait_for_selector("#channel_form")
    assert f"/admin/channels_app/channel/{broken.pk}/change/" in page.url
