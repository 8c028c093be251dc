"""Reads never hurt the webhook (issue 20, finding 1): the admin and the API read through a
pool of their own, a read over its budget answers 422 "narrow it" without tripping the
process's database breaker, and the webhook is served right after."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from pymongo.errors import ServerSelectionTimeoutError, WaitQueueTimeoutError
from pymongo.pool import Pool
from rest_framework.test import APIClient

import core.middleware
from channels_app.models import DeliveryState
from channels_app.tests.factories import ChannelFactory
from core.db_routing import OPERATORS_DB, in_operator_reads, operator_reads
from core.middleware import DatabaseBreaker
from core.mongo import mongo_collection
from dialogues.models import Message
from dialogues.selectors import message_by_message_id
from dialogues.tests.factories import DialogueFactory, MessageFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def breaker(monkeypatch: pytest.MonkeyPatch) -> Iterator[DatabaseBreaker]:
    """A breaker whose probe finds the database silent until the test ends: once tripped it
    stays open for the test to see (the real probe would find the test database answering and
    close it again within milliseconds)."""
    test_over = threading.Event()

    def ping() -> None:
        if not test_over.is_set():
            raise ServerSelectionTimeoutError("the test's database stays silent")

    fresh = DatabaseBreaker(ping=ping, retry_interval_s=0.01)
    monkeypatch.setattr(core.middleware, "database_breaker", fresh)
    yield fresh
    test_over.set()


@pytest.fixture
def operator_reads_stall(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    """Every database operation of an admin or API request waits out most of its read budget
    for a connection and gets none, as behind a heavy read; nothing else is touched (the
    webhook, the probe's ping)."""
    settings.MONGO_TIMEOUT_MS = 400
    settings.MONGO_READ_TIMEOUT_MS = 300
    original = Pool.checkout

    def checkout(self, handler=None):  # type: ignore[no-untyped-def]
        if in_operator_reads():
            time.sleep(0.25)
            raise WaitQueueTimeoutError("Timed out while checking out a connection from connection pool")
        return original(self, handler)

    monkeypatch.setattr(Pool, "checkout", checkout)


def _webhook(channel: Any) -> Any:
    return APIClient().post(
        "/api/webhook/new_message",
        {"chat_id": str(channel.pk), "text": "Hello", "message_sender": "customer"},
        format="json",
        headers={"x-chatbot_auth_token": f"Bearer {channel.chat_bot.plain_secret}"},
    )


def test_an_api_read_over_its_budget_is_422_and_keeps_the_webhook_up(
    api_client: APIClient, breaker: DatabaseBreaker, operator_reads_stall: None
) -> None:
    channel = ChannelFactory()
    started = time.monotonic()
    response = api_client.get("/api/dialogues/?limit=1")
    assert time.monotonic() - started >= 0.2  # it did wait half the bound: an outage would trip
    assert response.status_code == 422, response.content
    assert "narrow it" in response.json()["detail"].lower()
    assert "MONGO_READ_TIMEOUT_MS" in response.json()["detail"]
    assert breaker.checked(5)
    assert not breaker.is_open
    assert _webhook(channel).status_code == 200


def test_an_admin_page_over_its_budget_is_a_readable_422(
    admin_client: Client, breaker: DatabaseBreaker, operator_reads_stall: None
) -> None:
    channel = ChannelFactory()
    response = admin_client.get(reverse("admin:dialogues_dialogue_changelist"))
    assert response.status_code == 422
    assert "Narrow it" in response.content.decode()
    assert breaker.checked(5)
    assert not breaker.is_open
    assert _webhook(channel).status_code == 200


def test_a_database_that_does_not_answer_is_still_an_outage(
    api_client: APIClient, breaker: DatabaseBreaker, operator_reads_stall: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("core.errors.database_answers", lambda: False)
    monkeypatch.setattr("core.middleware.database_answers", lambda: False)
    response = api_client.get("/api/dialogues/")
    assert response.status_code == 503 and response["Retry-After"]
    assert breaker.checked(5)
    assert breaker.is_open


def test_admin_and_api_reads_use_a_pool_of_their_own(api_client: APIClient) -> None:
    DialogueFactory()
    default, operators = connections["default"], connections[OPERATORS_DB]
    with CaptureQueriesContext(default) as on_default, CaptureQueriesContext(operators) as on_operators:
        assert api_client.get("/api/dialogues/").status_code == 200
    assert on_operators.captured_queries and not on_default.captured_queries
    default.ensure_connection(), operators.ensure_connection()
    assert operators.connection is not default.connection  # two MongoClients, two pools
    with operator_reads(budget=False):
        assert mongo_collection("dialogues_message").database.client is operators.connection
    assert mongo_collection("dialogues_message").database.client is default.connection


def test_the_deliveries_list_joins_nothing(admin_client: Client) -> None:
    dialogue = DialogueFactory()
    MessageFactory(dialogue=dialogue, role=Message.Role.ASSISTANT, delivery_state=DeliveryState.FAILED)
    with CaptureQueriesContext(connections[OPERATORS_DB]) as queries:
        response = admin_client.get(reverse("admin:dialogues_delivery_changelist"))
    assert response.status_code == 200 and len(response.context["cl"].result_list) == 1
    sent = "\n".join(query["sql"] for query in queries.captured_queries)
    assert "dialogues_message" in sent and "$lookup" not in sent


def test_message_by_message_id_sends_plain_equalities_led_by_the_message_id(monkeypatch: pytest.MonkeyPatch) -> None:
    dialogue = DialogueFactory()
    message = MessageFactory(dialogue=dialogue, message_id="m-7")
    from pymongo.collection import Collection

    filters: list[dict[str, Any]] = []
    original = Collection.find

    def find(self, filter=None, *args, **kwargs):  # type: ignore[no-untyped-def]  # noqa: A002
        if self.name == Message._meta.db_table:
            filters.append(filter or {})
        return original(self, filter, *args, **kwargs)

    monkeypatch.setattr(Collection, "find", find)
    with CaptureQueriesContext(connections["default"]) as orm:
        found = message_by_message_id(dialogue=dialogue, message_id="m-7")
    assert found is not None and found.pk == message.pk
    assert not any("$and" in query["sql"] for query in orm.captured_queries)
    # Plain equalities, led by the field with an index of its own (docs/internals.md, "Known quirks").
    assert filters and filters[0] == {"message_id": "m-7", "dialogue_id": dialogue.pk}
