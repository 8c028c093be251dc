"""`POST /channels/telegram/<channel id>/updates`: Telegram's updates, verified by the
secret token, deduplicated by update_id, stored through the webhook's own ingest."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pymongo.errors import ServerSelectionTimeoutError
from rest_framework.test import APIClient

from channels_app.kinds.telegram import views as telegram_views
from channels_app.kinds.telegram.tests.fake_bot_api import fixture
from channels_app.kinds.telegram.views import BODY_MAX_BYTES
from channels_app.models import Channel
from channels_app.services import channel_set_active
from channels_app.tests.factories import ChannelFactory
from core import errors as core_errors
from dialogues.models import Dialogue, Message

pytestmark = pytest.mark.django_db


def updates_url(channel: Channel | str) -> str:
    pk = channel.pk if isinstance(channel, Channel) else channel
    return f"/channels/telegram/{pk}/updates"


def post_update(channel: Channel | str, body: Any, *, secret: str | None = None, raw: bytes | None = None) -> Any:
    headers = {}
    if secret is None and isinstance(channel, Channel):
        secret = channel.kind_secret
    if secret:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    data = raw if raw is not None else json.dumps(body)
    return APIClient().post(updates_url(channel), data=data, content_type="application/json", headers=headers)


def stored() -> list[Message]:
    return list(Message.objects.all())


def test_a_text_message_is_stored_in_the_chats_dialogue(channel: Channel) -> None:
    response = post_update(channel, fixture("update_text.json"))
    assert response.status_code == 200, response.content
    assert response.json() == {"ok": True, "duplicate": False}
    [message] = stored()
    assert message.message_id == "tg-803418001" and message.text == "Hello, is my order shipped?"
    assert message.role == Message.Role.USER and message.reply_state == Message.ReplyState.AWAITING
    dialogue = Dialogue.objects.get(pk=message.dialogue_id)
    assert dialogue.chat_id == "1111111" and dialogue.channel_id == channel.pk


def test_a_resent_update_is_stored_once(channel: Channel) -> None:
    update = fixture("update_text.json")
    assert post_update(channel, update).json()["duplicate"] is False
    again = post_update(channel, update)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert len(stored()) == 1


@pytest.mark.parametrize("secret", ["", "wrong-secret", "ÿ-not-ascii"])
def test_a_wrong_or_missing_secret_is_401_and_stores_nothing(channel: Channel, secret: str) -> None:
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret else {}
    response = APIClient().post(
        updates_url(channel),
        data=json.dumps(fixture("update_text.json")),
        content_type="application/json",
        headers=headers,
    )
    assert response.status_code == 401
    assert "detail" in response.json()
    assert stored() == [] and not Dialogue.objects.exists()


def test_the_secret_of_another_channel_is_refused(channel: Channel, create_channel: Any) -> None:
    other = Channel.objects.get(pk=create_channel(name="Other").json()["id"])
    assert other.kind_secret != channel.kind_secret
    assert post_update(channel, fixture("update_text.json"), secret=other.kind_secret).status_code == 401
    assert stored() == []


def test_a_message_from_a_bot_is_ignored(channel: Channel) -> None:
    response = post_update(channel, fixture("update_from_bot.json"))
    assert response.status_code == 200 and response.json() == {"ok": True, "ignored": "from_bot"}
    assert stored() == [] and not Dialogue.objects.exists()


def test_an_edited_message_is_acknowledged_not_stored(channel: Channel) -> None:
    post_update(channel, fixture("update_text.json"))
    response = post_update(channel, fixture("update_edited.json"))
    assert response.status_code == 200 and response.json()["ignored"] == "edited_message"
    assert [m.text for m in stored()] == ["Hello, is my order shipped?"]


@pytest.mark.parametrize(("name", "text"), [("update_photo.json", "[photo]"), ("update_sticker.json", "[sticker]")])
def test_a_non_text_message_is_stored_with_a_placeholder(channel: Channel, name: str, text: str) -> None:
    response = post_update(channel, fixture(name))
    assert response.status_code == 200 and response.json()["duplicate"] is False
    [message] = stored()
    assert message.text == text


def test_a_photos_caption_follows_its_placeholder(channel: Channel) -> None:
    update = fixture("update_photo.json")
    update["message"]["caption"] = "Is this the right colour?"
    assert post_update(channel, update).status_code == 200
    assert [m.text for m in stored()] == ["[photo] Is this the right colour?"]


@pytest.mark.parametrize(
    ("update", "ignored"),
    [
        (fixture("update_new_member.json"), "service_message"),
        (
            {"update_id": 5, "callback_query": {"id": "1", "from": {"id": 1, "is_bot": False, "first_name": "A"}}},
            "update_type",
        ),
    ],
)
def test_other_updates_are_acknowledged(channel: Channel, update: dict[str, Any], ignored: str) -> None:
    response = post_update(channel, update)
    assert response.status_code == 200 and response.json()["ignored"] == ignored
    assert stored() == []


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"",
        b"[1, 2]",
        b'"text"',
        b'{"message": {"text": "no update_id"}}',
        b'{"update_id": "7"}',
        b'{"update_id": 7, "message": {"text": "no chat"}}',
        b'{"update_id": true, "message": {}}',
    ],
)
def test_malformed_bodies_are_400_and_store_nothing(channel: Channel, raw: bytes) -> None:
    response = post_update(channel, None, raw=raw)
    assert response.status_code == 400, response.content
    assert "detail" in response.json()
    assert stored() == []


def test_an_oversize_body_is_413_and_stores_nothing(channel: Channel) -> None:
    update = fixture("update_text.json")
    update["padding"] = "x" * BODY_MAX_BYTES
    response = post_update(channel, update)
    assert response.status_code == 413 and "detail" in response.json()
    assert stored() == []


def test_an_unknown_channel_is_404(channel: Channel) -> None:
    for pk in ("000000000000000000000000", "not-an-id"):
        response = post_update(pk, fixture("update_text.json"), secret=channel.kind_secret)
        assert response.status_code == 404 and "detail" in response.json()
    assert stored() == []


def test_a_channel_of_another_kind_is_404(channel: Channel, bot: Any) -> None:
    webhook_channel = ChannelFactory(chat_bot=bot)
    response = post_update(webhook_channel, fixture("update_text.json"), secret=channel.kind_secret)
    assert response.status_code == 404
    assert stored() == []


def test_an_inactive_channel_is_404(channel: Channel) -> None:
    channel_set_active(channel=channel, is_active=False)
    assert post_update(channel, fixture("update_text.json")).status_code == 404
    assert stored() == []


def test_a_database_outage_is_503_so_telegram_resends(channel: Channel, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(message: Any) -> Any:
        raise ServerSelectionTimeoutError("no servers")

    monkeypatch.setattr(telegram_views, "inbound_ingest", down)
    # The database does not answer its probe either: an outage, not a slow read.
    monkeypatch.setattr(core_errors, "database_answers", lambda: False)
    response = post_update(channel, fixture("update_text.json"))
    assert response.status_code == 503
    assert stored() == []
