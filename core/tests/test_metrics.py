"""`GET /metrics`: refused without the token, and with it the counts of what really went through
the webhook and the worker (in this process, so metrics are single-process here; the
multiprocess mode is checked through the real servers in tests/e2e/test_metrics_server.py)."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from bson import ObjectId
from django.core.management import call_command
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from channels_app.models import Channel
from channels_app.tests.factories import ChannelFactory
from chatbots.models import ChatBot
from chatbots.tests.factories import ChatBotFactory
from config.admin_site import activity_chart
from core.caching import lookup_caches_clear
from core.mongo import mongo_collection
from devtools.receiver import ChannelReceiver, Reply
from dialogues.documents import message_document
from dialogues.models import Message
from dialogues.selectors_dashboard import HourActivity
from dialogues.store.activity import activity_collection
from tests.support.chat_completions import ChatCompletionsServer, ChatReply, error_body

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_hours_counted() -> None:
    # The dashboard's hourly counts are not a model's collection: the test flush keeps them.
    activity_collection().delete_many({})


TOKEN = "metrics-token-0123456789"  # noqa: S105 - a test value
WEBHOOK_URL = "/api/webhook/new_message"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(autouse=True)
def _metrics_on(settings: Any) -> Iterator[None]:
    settings.METRICS_TOKEN = TOKEN
    lookup_caches_clear()
    yield
    lookup_caches_clear()


@pytest.fixture
def llm_server(settings: Any) -> Iterator[ChatCompletionsServer]:
    server = ChatCompletionsServer().start()
    settings.LLM_BACKEND = "openai"
    settings.OPENAI_BASE_URL = server.base_url
    settings.OPENAI_API_KEY = "sk-test-metrics"
    settings.LLM_TIMEOUT_S = 5.0
    yield server
    server.stop()


def scrape(client: Client | None = None) -> Samples:
    response = (client or Client()).get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def post(bot: ChatBot, channel: Channel, message_id: str, *, secret: str | None = None) -> Any:
    body = {"message_id": message_id, "chat_id": str(channel.pk), "text": "Hello", "message_sender": "customer"}
    return APIClient().post(
        WEBHOOK_URL,
        data=json.dumps(body),
        content_type="application/json",
        headers={"x-chatbot_auth_token": f"Bearer {secret or bot.plain_secret}"},
    )


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong-token", f"Token {TOKEN}", f"Bearer {TOKEN}x", "Bearer", f"bearer{TOKEN}"],
    ids=["missing", "wrong", "other-scheme", "longer", "empty", "no-space"],
)
def test_metrics_refuse_requests_without_the_token(client: Client, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"detail": "A valid metrics bearer token is required."}
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"chatbots_" not in response.content


def test_metrics_are_off_without_a_token_configured(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    response = client.get("/metrics", headers={"Authorization": "Bearer "})
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_metrics_count_what_went_through_the_webhook_and_the_worker(
    receiver: ChannelReceiver, llm_server: ChatCompletionsServer, drain: Callable[[], None]
) -> None:
    bot = ChatBotFactory()
    channel = ChannelFactory(chat_bot=bot, url=receiver.url)
    before = scrape()

    for number in range(3):
        assert post(bot, channel, f"m-{number}").status_code == 200
    assert post(bot, channel, "m-0").json()["duplicate"] is True
    assert post(bot, channel, "m-9", secret="not-the-secret").status_code == 401
    drain()
    assert len(receiver.requests) == 3

    after = scrape()
    assert delta(before, after, "chatbots_webhook_requests_total", outcome="ok", status="200") == 3
    assert delta(before, after, "chatbots_webhook_requests_total", outcome="duplicate", status="200") == 1
    assert delta(before, after, "chatbots_webhook_requests_total", outcome="rejected", status="401") == 1
    # Every 2xx answer, the duplicate's included; the 401 is no ingest.
    assert delta(before, after, "chatbots_webhook_ingest_seconds_count") == 4
    assert delta(before, after, "chatbots_webhook_ingest_seconds_bucket", le="+Inf") == 4
    assert delta(before, after, "chatbots_delivery_attempts_total", outcome="delivered") == 3
    assert delta(before, after, "chatbots_delivery_attempts_total", outcome="failed") == 0
    assert delta(before, after, "chatbots_ack_to_delivery_seconds_count") == 3
    assert delta(before, after, "chatbots_ack_to_delivery_seconds_sum") > 0
    assert delta(before, after, "chatbots_llm_request_seconds_count", outcome="ok") == 3
    assert delta(before, after, "chatbots_llm_request_seconds_count", outcome="error") == 0
    # The server reports 11 prompt and 7 completion tokens per call.
    assert delta(before, after, "chatbots_llm_tokens_total", kind="prompt") == 33
    assert delta(before, after, "chatbots_llm_tokens_total", kind="completion") == 21
    # Read from the database when scraped: nothing waits, nothing is broken.
    for state in ("awaiting_reply", "pending", "failed", "parked", "dead", "llm_failed"):
        assert value(after, "chatbots_backlog", state=state) == 0, state
    assert value(after, "chatbots_breakers_open") == 0


def test_metrics_count_failures_and_read_the_backlog_and_breakers(
    receiver: ChannelReceiver, llm_server: ChatCompletionsServer, drain: Callable[[], None], settings: Any
) -> None:
    settings.DELIVERY_MAX_ATTEMPTS = 1
    settings.WORKER_BREAKER_THRESHOLD = 1
    bot = ChatBotFactory()
    broken = ChannelFactory(chat_bot=bot, url=receiver.url)
    before = scrape()

    # The first message's reply is refused by the channel (dead at once, the breaker opens);
    # the second's LLM call is refused for good (a 401 is not retried): no reply at all.
    llm_server.then(
        ChatReply(text="a reply"), ChatReply(status=401, body=error_body("bad key", code="invalid_api_key"))
    )
    receiver.script.append(Reply(status=500))
    assert post(bot, broken, "m-1").status_code == 200
    drain()
    ok_channel = ChannelFactory(chat_bot=bot, url=receiver.url)
    assert post(bot, ok_channel, "m-2").status_code == 200
    drain()

    after = scrape()
    assert delta(before, after, "chatbots_delivery_attempts_total", outcome="dead") == 1
    assert delta(before, after, "chatbots_delivery_attempts_total", outcome="delivered") == 0
    assert delta(before, after, "chatbots_ack_to_delivery_seconds_count") == 0
    assert delta(before, after, "chatbots_llm_errors_total", retryable="false") == 1
    assert delta(before, after, "chatbots_llm_request_seconds_count", outcome="error") == 1
    assert delta(before, after, "chatbots_llm_request_seconds_count", outcome="ok") == 1
    assert value(after, "chatbots_backlog", state="dead") == 1
    assert value(after, "chatbots_backlog", state="llm_failed") == 1
    assert value(after, "chatbots_backlog", state="pending") == 0
    assert value(after, "chatbots_breakers_open") == 1


def test_scrape_time_gauges_are_cached_for_a_few_seconds(
    receiver: ChannelReceiver, settings: Any, django_assert_max_num_queries: Any
) -> None:
    settings.METRICS_SCRAPE_CACHE_S = 60
    bot = ChatBotFactory()
    channel = ChannelFactory(chat_bot=bot, url=receiver.url)
    assert value(scrape(), "chatbots_backlog", state="awaiting_reply") == 0
    assert post(bot, channel, "m-1").status_code == 200
    # Within the cache's lifetime a scrape reads nothing from the database.
    with django_assert_max_num_queries(0):
        assert value(scrape(), "chatbots_backlog", state="awaiting_reply") == 0
    lookup_caches_clear()
    assert value(scrape(), "chatbots_backlog", state="awaiting_reply") == 1


# --- The admin index: health at a glance ---------------------------------------------------

BAR = re.compile(r'<rect class="bar (\w+)" data-series="\w+" data-hour="([^"]+)" data-value="(\d+)"')


def chart_bars(html: str) -> dict[tuple[str, str], int]:
    return {(series, hour): int(count) for series, hour, count in BAR.findall(html)}


def hour_key(when: datetime) -> str:
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:00Z")


def past_exchange(channel: Channel, *, at: datetime, took_s: float, number: int) -> None:
    """A customer message and its reply, delivered `took_s` after it was stored, as the
    webhook and the worker would have written them at `at`."""
    dialogue_id = ObjectId()
    user = message_document(
        dialogue_id=dialogue_id, chat_bot_id=channel.chat_bot_id, channel_id=channel.pk, message_id=f"old-{number}",
        role="USER", text="Hello", created_at=at, seq=1, reply_state="replied",
    )  # fmt: skip
    reply = message_document(
        dialogue_id=dialogue_id, chat_bot_id=channel.chat_bot_id, channel_id=channel.pk, message_id=f"re-{number}",
        role="ASSISTANT", text="Hi", created_at=at, in_reply_to=f"old-{number}", seq=2, delivery_state="delivered",
    )  # fmt: skip
    reply["delivered_at"] = at + timedelta(seconds=took_s)
    mongo_collection(Message._meta.db_table).insert_many([user, reply])


@pytest.fixture
def admin_client(client: Client, staff_user: Any) -> Client:
    client.force_login(staff_user)
    return client


def test_admin_index_shows_the_last_24_hours_the_backlog_breakers_and_slowest_channels(
    admin_client: Client, receiver: ChannelReceiver, drain: Callable[[], None], settings: Any
) -> None:
    settings.DELIVERY_MAX_ATTEMPTS = 1
    settings.WORKER_BREAKER_THRESHOLD = 1
    bot = ChatBotFactory()
    good = ChannelFactory(chat_bot=bot, url=receiver.url, name="Good channel")
    broken = ChannelFactory(chat_bot=bot, url=receiver.url, name="Broken channel")
    slow = ChannelFactory(chat_bot=bot, url=receiver.url, name="Slow channel")
    # Five hours ago, two exchanges whose replies took 40 s to be accepted, written before the
    # counts were kept: recounted from the messages.
    earlier = datetime.now(UTC).replace(minute=10, second=0, microsecond=0) - timedelta(hours=5)
    past_exchange(slow, at=earlier, took_s=40, number=1)
    past_exchange(slow, at=earlier, took_s=40, number=2)
    call_command("dashboard_rebuild", stdout=StringIO())
    # This hour's, counted by the webhook and the worker as they happen.
    for number in range(3):
        assert post(bot, good, f"m-{number}").status_code == 200
    drain()
    receiver.script.append(Reply(status=500))
    assert post(bot, broken, "b-1").status_code == 200
    drain()

    response = admin_client.get("/admin/")
    assert response.status_code == 200
    html = response.content.decode()
    bars = chart_bars(html)
    assert len(bars) == 24 * 3  # every hour, zeros included
    live = Counter(hour_key(m.created_at) for m in Message.objects.filter(role="USER", channel__in=[good, broken]))
    expected_in = Counter({hour_key(earlier): 2}) + live
    assert {hour: n for (series, hour), n in bars.items() if series == "messages_in" and n} == dict(expected_in)
    delivered = Counter(hour_key(m.delivered_at) for m in Message.objects.filter(delivery_state="delivered"))
    assert {hour: n for (series, hour), n in bars.items() if series == "delivered" and n} == dict(delivered)
    assert sum(n for (series, _), n in bars.items() if series == "failures") == 1
    assert re.search(r'id="total-messages_in">.*?<b>6</b>', html)
    assert re.search(r'id="total-delivered">.*?<b>5</b>', html)
    assert re.search(r'id="total-failures">.*?<b>1</b>', html)

    # The banner: one reply is dead, linked to the filtered Deliveries list.
    banner = re.search(r'<p class="errornote" id="replies-failing-banner">(.*?)</p>', html, re.S)
    assert banner is not None
    assert '/admin/dialogues/delivery/?state=dead">1 reply is dead' in banner.group(1)
    assert re.search(r'id="backlog-dead">.*?<td class="number">1</td>', html, re.S)
    assert re.search(r'id="backlog-pending">.*?<td class="number">0</td>', html, re.S)
    # The broken channel's breaker is open, with a link to its page.
    breakers = html.split('id="open-breakers"', 1)[1].split('id="slowest-channels"', 1)[0]
    assert f'/admin/channels_app/channel/{broken.pk}/change/">Broken channel</a>' in breakers
    assert "Good channel" not in breakers
    # Slowest first: all of the slow channel's replies took 40 s, in the 30-60 s bucket, so
    # its p95 is interpolated at 30 + 30 x 1.9/2 s.
    slowest = html.split('id="slowest-channels"', 1)[1]
    assert slowest.index("Slow channel") < slowest.index("Good channel")
    assert "58.50 s" in slowest
    assert "Broken channel" not in slowest  # nothing delivered


def test_admin_index_without_traffic_has_an_empty_chart_and_no_banner(admin_client: Client) -> None:
    html = admin_client.get("/admin/").content.decode()
    bars = chart_bars(html)
    assert len(bars) == 72 and set(bars.values()) == {0}
    assert 'id="activity-chart"' in html
    assert "replies-failing-banner" not in html
    assert "None: every channel is accepting replies." in html
    assert "No replies delivered in the last 24 hours." in html
    # The usual app list is still there, under it.
    assert "/admin/dialogues/delivery/" in html


def test_admin_index_numbers_are_cached(
    admin_client: Client, receiver: ChannelReceiver, settings: Any, drain: Callable[[], None]
) -> None:
    settings.ADMIN_DASHBOARD_CACHE_S = 60
    bot = ChatBotFactory()
    channel = ChannelFactory(chat_bot=bot, url=receiver.url)
    assert re.search(r'id="total-messages_in">.*?<b>0</b>', admin_client.get("/admin/").content.decode())
    assert post(bot, channel, "m-1").status_code == 200
    assert re.search(r'id="total-messages_in">.*?<b>0</b>', admin_client.get("/admin/").content.decode())
    lookup_caches_clear()
    assert re.search(r'id="total-messages_in">.*?<b>1</b>', admin_client.get("/admin/").content.decode())


def test_the_chart_scales_to_the_busiest_hour_on_round_numbers() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    hours = [HourActivity(hour=start + timedelta(hours=n), messages_in=n, delivered=0, failures=0) for n in range(24)]
    chart = activity_chart(hours)
    bars = {(bar.series, bar.value): bar for bar in chart["bars"]}
    assert [line["value"] for line in chart["grid"]] == [0, 25, 50]  # 23 at most: the axis ends at 50
    tallest = bars[("messages_in", 23)]
    plot = chart["baseline"] - 12
    assert tallest.height == pytest.approx(plot * 23 / 50, abs=0.01)
    assert tallest.y + tallest.height == pytest.approx(chart["baseline"], abs=0.01)
    assert bars[("messages_in", 0)].height == 0
