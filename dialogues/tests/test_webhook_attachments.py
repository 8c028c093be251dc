"""The webhook's `attachments`: files sent with a message, by link. Validated strictly (a bad one
is a 400 naming it by its path, with nothing stored), stored with the message, and shown by the
API's history."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from dialogues.models import Dialogue, Message
from dialogues.store.collections import messages_collection
from dialogues.tests.conftest import customer_message
from dialogues.tests.factories import MessageFactory

pytestmark = pytest.mark.django_db

PHOTO = {
    "url": "https://files.example.com/u/42/photo.jpg",
    "mime_type": "image/jpeg",
    "name": "photo.jpg",
    "size": 183204,
}
INVOICE = {"url": "https://files.example.com/u/42/invoice.pdf?sig=abc#page=2", "mime_type": "application/pdf"}
GIB = 1024**3


def _stored(message_id: str = "m-1") -> dict[str, Any]:
    doc = messages_collection().find_one({"message_id": message_id})
    assert doc is not None
    return doc


def _nothing_stored() -> None:
    assert Message.objects.count() == 0
    assert Dialogue.objects.count() == 0


def test_attachments_are_stored_with_the_message(channel, post_webhook, receiver) -> None:
    response = post_webhook(customer_message(channel, text="It arrived like this", attachments=[PHOTO, INVOICE]))

    assert response.status_code == 200, response.content
    assert response.json()["reply_pending"] is True
    doc = _stored()
    assert doc["text"] == "It arrived like this"
    # Every key of each file, null for what the channel did not say (as the ORM writes them).
    assert doc["attachments"] == [PHOTO, {**INVOICE, "name": None, "size": None}]
    message = Message.objects.get()
    assert [(a.url, a.mime_type, a.name, a.size) for a in message.attachments] == [
        (PHOTO["url"], "image/jpeg", "photo.jpg", 183204),
        (INVOICE["url"], "application/pdf", None, None),
    ]


def test_a_message_without_attachments_stores_an_empty_list(channel, post_webhook) -> None:
    assert post_webhook(customer_message(channel)).status_code == 200
    assert _stored()["attachments"] == []
    assert Message.objects.get().attachments == []


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"text": None}, id="text-absent"),
        pytest.param({"text": ""}, id="text-empty"),
    ],
)
def test_a_message_of_attachments_only_is_accepted(channel, post_webhook, change) -> None:
    body = customer_message(channel, attachments=[{"url": "https://files.example.com/a.png"}], **change)
    if change["text"] is None:
        del body["text"]

    response = post_webhook(body)

    assert response.status_code == 200, response.content
    doc = _stored()
    assert doc["text"] == ""
    assert doc["attachments"] == [
        {"url": "https://files.example.com/a.png", "mime_type": None, "name": None, "size": None}
    ]
    assert doc["reply_state"] == Message.ReplyState.AWAITING  # answered like any customer message


def test_an_employee_message_may_carry_attachments(channel, post_webhook) -> None:
    body = customer_message(channel, message_sender="employee", attachments=[INVOICE])
    response = post_webhook(body)
    assert response.status_code == 200
    assert response.json()["ignored_reason"] == "employee"
    doc = _stored()
    assert doc["role"] == Message.Role.EMPLOYEE and doc["attachments"][0]["url"] == INVOICE["url"]


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"attachments": []}, id="empty-list"),
        pytest.param({}, id="absent"),
    ],
)
def test_neither_text_nor_attachments_is_400_naming_text(channel, post_webhook, receiver, change) -> None:
    body = customer_message(channel, **change)
    del body["text"]
    for text in (None, ""):
        if text is not None:
            body["text"] = text
        response = post_webhook(body)
        assert response.status_code == 400, response.content
        assert "text" in response.json(), response.json()
    _nothing_stored()
    assert receiver.requests == []


def _with(**fields: Any) -> dict[str, Any]:
    return {"url": "https://files.example.com/f.bin", **fields}


BAD_ATTACHMENTS = [
    # The list itself.
    pytest.param({"url": "https://files.example.com/f.bin"}, "attachments", id="object-not-list"),
    pytest.param("https://files.example.com/f.bin", "attachments", id="string-not-list"),
    pytest.param(None, "attachments", id="null"),
    pytest.param([_with()] * 11, "attachments", id="eleven"),
    pytest.param([_with(), _with(), "https://files.example.com/f.bin"], "attachments[2]", id="item-not-object"),
    pytest.param([_with(), None], "attachments[1]", id="item-null"),
    # url
    pytest.param([{"mime_type": "image/png"}], "attachments[0].url", id="url-missing"),
    pytest.param([_with(), _with(), _with(url="http://files.example.com/f.png")], "attachments[2].url", id="http"),
    pytest.param([_with(url="ftp://files.example.com/f.png")], "attachments[0].url", id="ftp"),
    pytest.param([_with(url="javascript:alert(1)")], "attachments[0].url", id="javascript"),
    pytest.param([_with(url="HTTPS://files.example.com/f.png")], "attachments[0].url", id="upper-scheme"),
    pytest.param([_with(url="https://")], "attachments[0].url", id="no-host"),
    pytest.param([_with(url="https:///f.png")], "attachments[0].url", id="empty-host"),
    pytest.param([_with(url="https://user:pw@files.example.com/f")], "attachments[0].url", id="credentials"),
    pytest.param([_with(url="https://files.example.com/a b.png")], "attachments[0].url", id="space"),
    pytest.param([_with(url="https://files.example.com/f.png\n")], "attachments[0].url", id="trailing-newline"),
    pytest.param([_with(url="https://files.example.com/\x00")], "attachments[0].url", id="nul"),
    pytest.param([_with(url="https://f.example/" + "x" * 2031)], "attachments[0].url", id="url-2049"),
    pytest.param([_with(url=None)], "attachments[0].url", id="url-null"),
    pytest.param([_with(url=7)], "attachments[0].url", id="url-number"),
    pytest.param([_with(url={"$gt": ""})], "attachments[0].url", id="url-operator"),
    pytest.param([_with(url="")], "attachments[0].url", id="url-empty"),
    # mime_type
    pytest.param([_with(mime_type="image")], "attachments[0].mime_type", id="mime-no-subtype"),
    pytest.param([_with(mime_type="image/png; q=1")], "attachments[0].mime_type", id="mime-parameters"),
    pytest.param([_with(mime_type="image/png\n")], "attachments[0].mime_type", id="mime-newline"),
    pytest.param([_with(mime_type="/png")], "attachments[0].mime_type", id="mime-no-type"),
    pytest.param([_with(mime_type="a/" + "b" * 126)], "attachments[0].mime_type", id="mime-128"),
    pytest.param([_with(mime_type=5)], "attachments[0].mime_type", id="mime-number"),
    pytest.param([_with(mime_type="")], "attachments[0].mime_type", id="mime-empty"),
    # name
    pytest.param([_with(name="a\nb")], "attachments[0].name", id="name-newline"),
    pytest.param([_with(name="   ")], "attachments[0].name", id="name-blank"),
    pytest.param([_with(name="")], "attachments[0].name", id="name-empty"),
    pytest.param([_with(name="n" * 256)], "attachments[0].name", id="name-256"),
    pytest.param([_with(name=["a"])], "attachments[0].name", id="name-list"),
    # size
    pytest.param([_with(size=-1)], "attachments[0].size", id="size-negative"),
    pytest.param([_with(size=2 * GIB + 1)], "attachments[0].size", id="size-over-2gib"),
    pytest.param([_with(size="10")], "attachments[0].size", id="size-string"),
    pytest.param([_with(size=1.5)], "attachments[0].size", id="size-fraction"),
    pytest.param([_with(size=True)], "attachments[0].size", id="size-boolean"),
]


@pytest.mark.parametrize(("attachments", "field"), BAD_ATTACHMENTS)
def test_an_invalid_attachment_is_400_naming_it_and_stores_nothing(
    channel, post_webhook, receiver, attachments, field
) -> None:
    response = post_webhook(customer_message(channel, attachments=attachments))

    assert response.status_code == 400, response.content
    body = response.json()
    # The existing error shape: the field (here its path) and a list of messages.
    assert set(body) == {field}, body
    assert body[field] and all(isinstance(message, str) for message in body[field])
    _nothing_stored()
    assert receiver.requests == []


def test_several_invalid_attachments_are_each_named(channel, post_webhook) -> None:
    attachments = [_with(), _with(url="http://x.example/a", size=-1), _with(mime_type="nope")]
    body = post_webhook(customer_message(channel, attachments=attachments)).json()
    assert set(body) == {"attachments[1].url", "attachments[1].size", "attachments[2].mime_type"}
    _nothing_stored()


def test_the_largest_allowed_attachments_are_accepted(channel, post_webhook) -> None:
    longest = "https://f.example/" + "x" * (2048 - len("https://f.example/"))
    attachments = [
        {"url": longest, "mime_type": "a/" + "b" * 125, "name": "n" * 255, "size": 2 * GIB},
        *[_with(size=0, mime_type="application/vnd.openxmlformats-officedocument.wordprocessingml.document")] * 9,
    ]
    response = post_webhook(customer_message(channel, attachments=attachments))
    assert response.status_code == 200, response.content
    stored = _stored()["attachments"]
    assert len(stored) == 10
    assert stored[0] == {"url": longest, "mime_type": "a/" + "b" * 125, "name": "n" * 255, "size": 2 * GIB}


def test_optional_fields_may_be_null_and_unknown_keys_are_ignored(channel, post_webhook) -> None:
    file = {"url": "https://x.example/a", "mime_type": None, "name": None, "size": None, "thumbnail": "ignored"}
    assert post_webhook(customer_message(channel, attachments=[file])).status_code == 200
    assert _stored()["attachments"] == [{"url": "https://x.example/a", "mime_type": None, "name": None, "size": None}]


def test_a_duplicate_keeps_the_original_attachments(channel, post_webhook) -> None:
    assert post_webhook(customer_message(channel, attachments=[PHOTO])).status_code == 200
    again = post_webhook(customer_message(channel, attachments=[INVOICE]))

    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert Message.objects.count() == 1
    assert [a.url for a in Message.objects.get().attachments] == [PHOTO["url"]]
    assert Dialogue.objects.get().message_count == 2  # the message and its reply's place, once


def test_the_api_history_shows_the_attachments(channel, post_webhook, api_client: APIClient) -> None:
    body = post_webhook(customer_message(channel, message_id="m-files", text="", attachments=[PHOTO, INVOICE])).json()
    assert post_webhook(customer_message(channel, message_id="m-text", text="and a question")).status_code == 200

    by_dialogue = api_client.get(f"/api/dialogues/{body['dialogue_id']}/messages")
    by_channel = api_client.get(f"/api/channels/{channel.pk}/dialogue")

    for response in (by_dialogue, by_channel):
        assert response.status_code == 200, response.content
        messages = {m["message_id"]: m for m in response.json()["message_list"]}
        assert messages["m-files"]["text"] == ""
        assert messages["m-files"]["attachments"] == [PHOTO, {**INVOICE, "name": None, "size": None}]
        assert messages["m-text"]["attachments"] == []


def test_messages_stored_before_attachments_existed_show_none(api_client: APIClient) -> None:
    message = MessageFactory(text="from last year")
    # As stored before the field existed (migration 0012 adds it without rewriting messages).
    messages_collection().update_one({"_id": message.pk}, {"$unset": {"attachments": ""}})

    response = api_client.get(f"/api/dialogues/{message.dialogue_id}/messages")

    assert response.status_code == 200
    [shown] = response.json()["message_list"]
    assert shown["text"] == "from last year" and shown["attachments"] == []


def test_the_schema_states_the_attachments_and_that_text_or_files_are_required(client) -> None:
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    request = schema["components"]["schemas"]["WebhookMessageRequest"]
    assert set(request["required"]) == {"chat_id", "message_sender"}
    assert request["anyOf"] == [
        {"required": ["text"], "properties": {"text": {"minLength": 1}}},
        {"required": ["attachments"], "properties": {"attachments": {"minItems": 1}}},
    ]
    assert request["properties"]["attachments"]["maxItems"] == 10
    item = schema["components"]["schemas"]["WebhookAttachmentRequest"]
    assert item["required"] == ["url"]
    assert item["properties"]["url"]["maxLength"] == 2048
    assert item["properties"]["url"]["pattern"].startswith("^https://")
    assert item["properties"]["size"]["maximum"] == 2 * GIB
    history = schema["components"]["schemas"]["Message"]["properties"]["attachments"]
    assert history["items"] == {"$ref": "#/components/schemas/Attachment"}
