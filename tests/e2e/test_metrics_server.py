"""`/metrics` through the real servers, as `make run` starts them: gunicorn with two worker
processes and the worker process beside them, sharing one PROMETHEUS_MULTIPROC_DIR. Each
gunicorn worker sees only the webhooks it served and the worker process serves no HTTP at
all, so totals that come out right from every scrape prove that the scrape adds up every
process's files, whichever gunicorn worker answered it."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from channels_app.tests.factories import ChannelFactory
from chatbots.tests.factories import ChatBotFactory
from devtools.receiver import ChannelReceiver
from tests.support.live_server import LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TOKEN = "e2e-metrics-token-0123456789"  # noqa: S105 - a test value
BATCH = 12


@pytest.fixture
def server(django_db_setup: Any) -> Iterator[LiveServer]:
    live = LiveServer(
        db_name=settings.DATABASES["default"]["NAME"],
        env={"METRICS_TOKEN": TOKEN, "METRICS_SCRAPE_CACHE_S": "0"},
        workers=2,
        worker=True,
    ).start()
    try:
        yield live
    finally:
        live.stop()


def scrape(server: LiveServer) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    # A new connection each time, so any of the gunicorn workers may answer.
    response = requests.get(
        f"{server.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}", "Connection": "close"}, timeout=30
    )
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def totals(server: LiveServer) -> dict[str, float]:
    samples = scrape(server)

    def get(name: str, **labels: str) -> float:
        return samples.get((name, frozenset(labels.items())), 0.0)

    return {
        "webhook_ok": get("chatbots_webhook_requests_total", outcome="ok", status="200"),
        "ingest": get("chatbots_webhook_ingest_seconds_count"),
        "delivered": get("chatbots_delivery_attempts_total", outcome="delivered"),
        "ack_to_delivery": get("chatbots_ack_to_delivery_seconds_count"),
        "llm_ok": get("chatbots_llm_request_seconds_count", outcome="ok"),
        "awaiting_reply": get("chatbots_backlog", state="awaiting_reply"),
    }


def webhook_counts_by_pid(directory: str) -> dict[int, float]:
    """The webhook requests each process counted, from its own files."""
    counts: dict[int, float] = {}
    for path in Path(directory).glob("counter_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        for metric in MultiProcessCollector.merge([str(path)]):
            if metric.name == "chatbots_webhook_requests":
                counts[pid] = sum(s.value for s in metric.samples if s.name.endswith("_total"))
    return {pid: n for pid, n in counts.items() if n}


def wait_for(condition: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_metrics_add_up_every_gunicorn_worker_and_the_worker_process(
    server: LiveServer, receiver: ChannelReceiver
) -> None:
    bot = ChatBotFactory()
    channels = [ChannelFactory(chat_bot=bot, url=receiver.url) for _ in range(4)]

    def send(number: int) -> int:
        channel = channels[number % len(channels)]
        return requests.post(
            f"{server.url}/api/webhook/new_message",
            headers={"x-chatbot_auth_token": f"Bearer {bot.plain_secret}", "Connection": "close"},
            json={"chat_id": str(channel.pk), "text": "hi", "message_sender": "customer", "message_id": f"m-{number}"},
            timeout=30,
        ).status_code

    # Until both gunicorn workers have served some of them (the kernel picks who accepts).
    sent = 0
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(10):
            assert set(pool.map(send, range(sent, sent + BATCH))) == {200}
            sent += BATCH
            if len(webhook_counts_by_pid(server.metrics_dir)) >= 2:
                break
    served = webhook_counts_by_pid(server.metrics_dir)
    assert len(served) == 2, served
    assert sum(served.values()) == sent
    assert all(count < sent for count in served.values())  # neither saw them all

    receiver.wait_for(sent, timeout=60)
    expected = {
        "webhook_ok": sent,
        "ingest": sent,
        "delivered": sent,
        "ack_to_delivery": sent,
        "llm_ok": sent,
        "awaiting_reply": 0,
    }
    # The worker records each outcome just after the channel answered, and the backlog gauge
    # is read from the database at most every METRICS_SCRAPE_CACHE_S: wait for both.
    wait_for(lambda: totals(server) == expected)
    for _ in range(8):
        assert totals(server) == expected

    # A gunicorn worker that dies takes nothing with it: its files still count, and the
    # worker gunicorn starts in its place answers with the same totals.
    victim = next(iter(served))
    assert server.process is not None
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: requests.get(f"{server.url}/healthz", timeout=5).status_code == 200)
    for _ in range(4):
        assert totals(server) == expected
