from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from rest_framework.test import APIClient

from channels_app.tests.factories import ChannelFactory
from core.tests.factories import api_token_key
from dialogues.documents import message_document
from dialogues.models import Dialogue, Message
from dialogues.tests.factories import DialogueFactory, MessageFactory

pytestmark = pytest.mark.django_db

MISSING_ID = "0123456789abcdef01234567"
BIG = 10_000


def test_list_is_a_cursor_page_with_filters(api_client: APIClient) -> None:
    first = DialogueFactory()
    second = DialogueFactory(channel=first.channel, chat_id="user-42")
    third = DialogueFactory()

    def ids(query: str = "") -> list[str]:
        response = api_client.get(f"/api/dialogues/?{query}")
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"next", "previous", "results"}
        return [d["id"] for d in body["results"]]

    assert set(ids()) == {str(first.pk), str(second.pk), str(third.pk)}
    assert set(ids(f"chat_bot_id={first.chat_bot_id}")) == {str(first.pk), str(second.pk)}
    assert set(ids(f"channel_id={third.channel_id}")) == {str(third.pk)}
    assert ids("chat_id=user-42") == [str(second.pk)]
    assert ids(f"channel_id={first.channel_id}&chat_id={first.chat_id}") == [str(first.pk)]
    assert ids(f"chat_bot_id={MISSING_ID}") == []
    paged = api_client.get("/api/dialogues/?limit=1").json()
    assert paged["next"] and paged["previous"] is None and len(paged["results"]) == 1


@pytest.mark.parametrize(
    ("query", "field"),
    [("chat_bot_id=1", "chat_bot_id"), ("channel_id=zz", "channel_id"), ("chat_id=" + "x" * 300, "chat_id")],
)
def test_bad_filters_are_400(api_client: APIClient, query: str, field: str) -> None:
    response = api_client.get(f"/api/dialogues/?{query}")
    assert response.status_code == 400
    assert field in response.json()


def test_retrieve(api_client: APIClient) -> None:
    message = MessageFactory()
    dialogue = message.dialogue
    response = api_client.get(f"/api/dialogues/{dialogue.pk}")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(dialogue.pk)
    assert body["chat_bot_id"] == str(dialogue.chat_bot_id) and body["channel_id"] == str(dialogue.channel_id)
    assert body["chat_id"] == dialogue.chat_id
    assert set(body) == {"id", "chat_bot_id", "channel_id", "chat_id", "created_at", "last_message_at", "message_count",
                         "paused", "paused_until"}  # fmt: skip


@pytest.mark.parametrize("bad_id", ["x", MISSING_ID])
@pytest.mark.parametrize("suffix", ["", "/", "/messages", "/messages/"])
def test_malformed_or_unknown_id_is_404(api_client: APIClient, bad_id: str, suffix: str) -> None:
    response = api_client.get(f"/api/dialogues/{bad_id}{suffix}")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_dialogues_are_read_only(api_client: APIClient) -> None:
    dialogue = DialogueFactory()
    assert api_client.post("/api/dialogues/", {}, format="json").status_code == 405
    assert api_client.delete(f"/api/dialogues/{dialogue.pk}").status_code == 405
    assert Dialogue.objects.filter(pk=dialogue.pk).exists()


def test_anonymous_is_401(anon_client: APIClient) -> None:
    dialogue = DialogueFactory()
    for path in ["/api/dialogues/", f"/api/dialogues/{dialogue.pk}", f"/api/dialogues/{dialogue.pk}/messages"]:
        response = anon_client.get(path)
        assert response.status_code == 401
        assert response["Content-Type"] == "application/json"


def test_messages_with_equal_timestamps_page_without_gaps(api_client: APIClient) -> None:
    """Ties on created_at are settled by id, so no message is skipped or repeated."""
    dialogue = DialogueFactory()
    moment = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    made = [MessageFactory(dialogue=dialogue, message_id=f"t{i}", created_at=moment) for i in range(5)]
    expected = [m.message_id for m in sorted(made, key=lambda m: m.pk)]
    seen: list[str] = []
    query = "limit=2"
    while True:
        body = api_client.get(f"/api/dialogues/{dialogue.pk}/messages?{query}").json()
        seen = [m["message_id"] for m in body["message_list"]] + seen
        if not body["has_more"]:
            break
        query = f"limit=2&before={body['message_list'][0]['message_id']}"
    assert seen == expected


def _insert_messages(dialogue: Dialogue, count: int) -> list[str]:
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    docs = [
        message_document(
            dialogue_id=dialogue.pk,
            chat_bot_id=dialogue.chat_bot_id,
            channel_id=dialogue.channel_id,
            message_id=f"m{i:05d}",
            role="USER" if i % 2 == 0 else "ASSISTANT",
            text=f"message {i}",
            created_at=start + dt.timedelta(seconds=i),
        )
        for i in range(count)
    ]
    collection = connection.get_collection(Message._meta.db_table)
    # In batches: one 10,000-document batch can outlast the socket timeout on a busy
    # machine, and pymongo's retry then collides with its own first attempt.
    for start_at in range(0, count, 1000):
        collection.insert_many(docs[start_at : start_at + 1000])
    return [doc["message_id"] for doc in docs]


@pytest.mark.slow
def test_paging_a_dialogue_of_ten_thousand_messages(api_client: APIClient, monkeypatch: pytest.MonkeyPatch) -> None:
    channel = ChannelFactory()
    dialogue = DialogueFactory(channel=channel, chat_id=str(channel.pk))
    ids = _insert_messages(dialogue, BIG)

    # Record what the selector asks the database for (the database itself is real).
    finds: list[dict[str, Any]] = []
    collection = connection.get_collection(Message._meta.db_table)
    real_find = type(collection).find

    def recording_find(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.name == Message._meta.db_table:
            finds.append({"filter": args[0] if args else kwargs.get("filter"), **kwargs})
        return real_find(self, *args, **kwargs)

    monkeypatch.setattr(type(collection), "find", recording_find)

    started = time.monotonic()
    latest = api_client.get(f"/api/channels/{channel.pk}/dialogue?limit=50").json()
    elapsed = time.monotonic() - started
    assert [m["message_id"] for m in latest["message_list"]] == ids[-50:]
    assert latest["has_more"] is True
    assert finds[-1]["limit"] == 51
    assert elapsed < 5, elapsed

    older = api_client.get(f"/api/dialogues/{dialogue.pk}/messages?limit=100&before=m00200").json()
    assert [m["message_id"] for m in older["message_list"]] == ids[100:200]
    newer = api_client.get(f"/api/dialogues/{dialogue.pk}/messages?limit=100&after=m09899").json()
    assert [m["message_id"] for m in newer["message_list"]] == ids[9900:]
    assert newer["has_more"] is False
    first = api_client.get(f"/api/dialogues/{dialogue.pk}/messages?before=m00003").json()
    assert [m["message_id"] for m in first["message_list"]] == ids[:3] and first["has_more"] is False
    default = api_client.get(f"/api/dialogues/{dialogue.pk}/messages").json()
    assert len(default["message_list"]) == 100 and default["message_list"][-1]["message_id"] == ids[-1]

    # A cursor page near the start reads only the index keys up to the cursor, not the
    # other ten thousand: the created_at range bounds the scan.
    older_query = next(f for f in finds if isinstance(f["filter"].get("created_at"), dict))
    plan = collection.find(older_query["filter"]).sort(older_query["sort"]).limit(101).explain()
    stats = plan["executionStats"]
    assert stats["totalKeysExamined"] <= 250 and stats["totalDocsExamined"] <= 250, stats
    assert "message_dialogue_order" in str(plan["queryPlanner"]["winningPlan"])


def test_a_history_cursor_of_no_message_is_404_naming_it(api_client: APIClient) -> None:
    """Any string is a well-formed cursor (the schema says so): one that names no message of the
    dialogue is not found, not a 400 for input the schema calls valid."""
    message = MessageFactory()
    dialogue = message.dialogue
    for query, name in (("before=nope", "before"), ("after=nope", "after")):
        response = api_client.get(f"/api/dialogues/{dialogue.pk}/messages?{query}")
        assert response.status_code == 404
        assert response.json() == {name: ["No message with this message_id in the dialogue."]}
    both = api_client.get(
        f"/api/dialogues/{dialogue.pk}/messages?before={message.message_id}&after={message.message_id}"
    )
    assert both.status_code == 400 and "after" in both.json()


def _staff_client(django_user_model: Any, name: str, *codenames: str) -> APIClient:
    user = django_user_model.objects.create_user(username=name, password="pass-12345-x", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_key(user)}")
    return client


def test_a_channels_transcript_needs_the_dialogue_view_permission(django_user_model: Any) -> None:
    """The bug: `view_channel` alone read whole transcripts through the channel's history,
    which `/api/dialogues/` refuses that user."""
    channel = ChannelFactory()
    dialogue = DialogueFactory(channel=channel, chat_bot=channel.chat_bot, chat_id=str(channel.pk))
    MessageFactory(dialogue=dialogue, text="my card number is 4111")
    channel_only = _staff_client(django_user_model, "channel_only", "view_channel")
    refused = channel_only.get(f"/api/channels/{channel.pk}/dialogue")
    assert refused.status_code == 403 and "4111" not in refused.content.decode()
    assert channel_only.get(f"/api/dialogues/{dialogue.pk}/messages").status_code == 403

    both = _staff_client(django_user_model, "both", "view_channel", "view_dialogue")
    history = both.get(f"/api/channels/{channel.pk}/dialogue")
    assert history.status_code == 200
    assert [m["text"] for m in history.json()["message_list"]] == ["my card number is 4111"]
