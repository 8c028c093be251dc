"""The benchmark's simplest-design floor answers each message once, and its index arithmetic."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from pymongo import MongoClient

from bench.dbstats import DbDelta, index_entries, index_weight
from bench.simple import WEBHOOK_PATH, SimpleApp, indexes_ensure, token_hash
from devtools.receiver import ChannelReceiver


def test_index_weight_counts_partial_and_sparse_indexes_by_their_share() -> None:
    filters: list[dict[str, Any]] = []

    def count(query: dict[str, Any]) -> int:
        filters.append(query)
        return 25

    plain = index_weight({"key": {"_id": 1}}, count=count, total=100)
    partial = index_weight({"key": {"a": 1}, "partialFilterExpression": {"role": "ASSISTANT"}}, count=count, total=100)
    sparse = index_weight({"key": {"b": 1, "c": 1}, "sparse": True}, count=count, total=100)

    assert (plain, partial, sparse) == (1.0, 0.25, 0.25)
    assert filters == [{"role": "ASSISTANT"}, {"$or": [{"b": {"$exists": True}}, {"c": {"$exists": True}}]}]


def test_index_entries_count_inserts_and_updates_times_their_collections_indexes() -> None:
    delta = DbDelta(
        top={
            ("dialogues", "update"): (20, 0),
            ("dialogues", "find"): (50, 0),
            ("messages", "insert"): (20, 0),
            ("messages", "update"): (10, 0),
            ("core_ratecounter", "update"): (5, 0),
        }
    )
    weights = {"dialogues": 6.5, "messages": 2.0, "core_ratecounter": 2.0}

    entries = index_entries(delta, weights, messages=10)

    assert entries == {"dialogues": 13.0, "messages": 6.0, "other": 1.0, "total": 20.0}


@pytest.fixture
def simple_app() -> Iterator[tuple[SimpleApp, Any, ChannelReceiver]]:
    name = f"{settings.MONGO_DB_NAME}_simple_{uuid.uuid4().hex[:8]}"
    client: MongoClient = MongoClient(settings.MONGO_URL)
    receiver = ChannelReceiver().start()
    try:
        indexes_ensure(client[name])
        yield SimpleApp(mongo_url=settings.MONGO_URL, db_name=name), client[name], receiver
    finally:
        receiver.stop()
        client.drop_database(name)
        client.close()


def _post(app: SimpleApp, body: dict[str, Any], secret: str) -> tuple[str, dict[str, Any]]:
    raw = json.dumps(body).encode()
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": WEBHOOK_PATH, "CONTENT_LENGTH": str(len(raw)),
               "wsgi.input": io.BytesIO(raw), "HTTP_X_CHATBOT_AUTH_TOKEN": f"Bearer {secret}"}  # fmt: skip
    statuses: list[str] = []
    answer = app(environ, lambda status, headers: statuses.append(status))
    return statuses[0], json.loads(b"".join(answer))


def test_simple_floor_replies_once_and_answers_a_duplicate_without_replying(simple_app) -> None:
    app, db, receiver = simple_app
    bot_id = db.bots.insert_one({"token_hash": token_hash("s3cret")}).inserted_id
    channel_id = db.channels.insert_one({"bot_id": bot_id, "url": receiver.url, "token": "ch-token"}).inserted_id
    body = {"message_id": "m-1", "chat_id": str(channel_id), "text": "hello", "message_sender": "customer"}

    first_status, first = _post(app, body, "s3cret")
    again_status, again = _post(app, body, "s3cret")
    wrong_status, _ = _post(app, body, "other")

    assert (first_status, again_status, wrong_status) == ("200 OK", "200 OK", "401 Unauthorized")
    assert (first["duplicate"], first["delivery"], again["duplicate"]) == (False, "delivered", True)
    assert len(receiver.requests) == 1
    sent = receiver.requests[0]
    assert sent.json["in_reply_to"] == "m-1"
    assert sent.headers["webhook-id"] == sent.json["message_id"]
    assert sent.headers["x-chat_auth_token"] == "Bearer ch-token"
    assert db.messages.count_documents({}) == 2
    assert db.messages.find_one({"role": "ASSISTANT"})["delivery_state"] == "delivered"
    assert db.dialogues.count_documents({}) == 1
