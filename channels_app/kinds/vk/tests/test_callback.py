"""VK's Callback API server: VK's events (fixtures/callback_*.json, as documented) posted to a
VK channel's endpoint."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from bson import ObjectId
from django.urls import reverse
from pymongo.errors import ServerSelectionTimeoutError
from rest_framework.test import APIClient

from channels_app.kinds.vk import views
from channels_app.kinds.vk.event_log import COLLECTION, TTL_INDEX, event_seen
from channels_app.kinds.vk.tests.conftest import CONFIRMATION_CODE, GROUP_ID
from channels_app.kinds.vk.tests.fake_vk import fixture
from channels_app.models import Channel
from channels_app.tests.factories import ChannelFactory
from core.mongo import mongo_collection
from dialogues.models import Dialogue, Message

pytestmark = pytest.mark.django_db


def _url(channel_id: Any) -> str:
    return reverse("vk-callback", args=[str(channel_id)])


def _post(client: APIClient, channel_id: Any, event: Any) -> Any:
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    return client.post(_url(channel_id), data=body, content_type="application/json")


def _event(name: str, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = copy.deepcopy(fixture(name))
    event.update(changes)
    return event


def _messages(channel: Channel) -> list[Message]:
    return list(Message.objects.filter(channel_id=channel.pk).order_by("seq"))


def _is_ok(response: Any) -> bool:
    return (
        response.status_code == 200 and response.content == b"ok" and response["Content-Type"].startswith("text/plain")
    )


def test_confirmation_is_answered_with_the_code(anon_client: APIClient, vk_channel: Channel) -> None:
    response = _post(anon_client, vk_channel.pk, fixture("callback_confirmation.json"))
    assert response.status_code == 200 and response.content == CONFIRMATION_CODE.encode()
    assert response["Content-Type"].startswith("text/plain")


def test_confirmation_for_another_community_is_refused(anon_client: APIClient, vk_channel: Channel) -> None:
    response = _post(anon_client, vk_channel.pk, _event("callback_confirmation.json", group_id=GROUP_ID + 1))
    assert response.status_code == 403 and CONFIRMATION_CODE not in response.content.decode()


def test_a_customer_message_is_stored_and_ok_answered(anon_client: APIClient, vk_channel: Channel) -> None:
    response = _post(anon_client, vk_channel.pk, fixture("callback_message_new.json"))
    assert _is_ok(response)
    [message] = _messages(vk_channel)
    assert (message.message_id, message.role, message.text) == (
        f"vk-{GROUP_ID}-4242",
        Message.Role.USER,
        "Hello! Is the shop open on Sunday?",
    )
    assert message.reply_state == Message.ReplyState.AWAITING
    assert Dialogue.objects.get(pk=message.dialogue_id).chat_id == "987654321"


@pytest.mark.parametrize("secret", ["wrong-secret", "", None, 12345])
def test_a_wrong_secret_is_refused_and_nothing_stored(anon_client: APIClient, vk_channel: Channel, secret: Any) -> None:
    event = _event("callback_message_new.json", secret=secret)
    if secret is None:
        del event["secret"]
    response = _post(anon_client, vk_channel.pk, event)
    assert response.status_code == 403 and response.json() == {"detail": "Wrong secret"}
    assert _messages(vk_channel) == []
    assert not event_seen(channel_id=str(vk_channel.pk), event_id=event["event_id"])


def test_an_event_of_another_community_is_refused(anon_client: APIClient, vk_channel: Channel) -> None:
    response = _post(anon_client, vk_channel.pk, _event("callback_message_new.json", group_id=GROUP_ID + 1))
    assert response.status_code == 403 and _messages(vk_channel) == []


def test_the_same_event_twice_is_one_message(anon_client: APIClient, vk_channel: Channel) -> None:
    event = fixture("callback_message_new.json")
    assert _is_ok(_post(anon_client, vk_channel.pk, event))
    assert event_seen(channel_id=str(vk_channel.pk), event_id=event["event_id"])
    assert _is_ok(_post(anon_client, vk_channel.pk, event))
    assert len(_messages(vk_channel)) == 1


def test_a_resend_under_another_event_id_is_one_message(anon_client: APIClient, vk_channel: Channel) -> None:
    assert _is_ok(_post(anon_client, vk_channel.pk, fixture("callback_message_new.json")))
    resent = _event("callback_message_new.json", event_id="11112222333344445555666677778888aaaabbbb")
    assert _is_ok(_post(anon_client, vk_channel.pk, resent))
    assert [m.message_id for m in _messages(vk_channel)] == [f"vk-{GROUP_ID}-4242"]


def test_a_message_without_id_is_known_by_its_conversation_message_id(
    anon_client: APIClient, vk_channel: Channel
) -> None:
    event = _event("callback_message_new.json")
    event["object"]["message"]["id"] = 0
    assert _is_ok(_post(anon_client, vk_channel.pk, event))
    assert _is_ok(_post(anon_client, vk_channel.pk, {**event, "event_id": "another-event"}))
    assert [m.message_id for m in _messages(vk_channel)] == [f"vk-{GROUP_ID}-987654321-c17"]


@pytest.mark.parametrize("from_id", [-GROUP_ID, -777])
def test_the_communitys_own_messages_are_acknowledged_not_answered(
    anon_client: APIClient, vk_channel: Channel, from_id: int
) -> None:
    event = _event("callback_message_new.json")
    event["object"]["message"]["from_id"] = from_id
    assert _is_ok(_post(anon_client, vk_channel.pk, event))
    assert _messages(vk_channel) == []


def test_our_own_replies_coming_back_are_acknowledged_only(anon_client: APIClient, vk_channel: Channel) -> None:
    event = _event("callback_message_reply.json")
    del event["object"]["admin_author_id"]  # sent through messages.send with the community key
    assert _is_ok(_post(anon_client, vk_channel.pk, event))
    assert _messages(vk_channel) == []


def test_an_operators_message_from_vk_is_recorded_as_an_employees(anon_client: APIClient, vk_channel: Channel) -> None:
    assert _is_ok(_post(anon_client, vk_channel.pk, fixture("callback_message_new.json")))
    assert _is_ok(_post(anon_client, vk_channel.pk, fixture("callback_message_reply.json")))
    customer, employee = _messages(vk_channel)
    assert (employee.role, employee.message_id, employee.text) == (
        Message.Role.EMPLOYEE,
        f"vk-{GROUP_ID}-4243",
        "Anna here: yes, 10:00 to 18:00.",
    )
    assert employee.dialogue_id == customer.dialogue_id


def test_other_events_are_acknowledged_and_nothing_stored(anon_client: APIClient, vk_channel: Channel) -> None:
    assert _is_ok(_post(anon_client, vk_channel.pk, fixture("callback_group_join.json")))
    event = _event("callback_message_new.json")
    event["object"]["message"]["text"] = ""  # a sticker alone
    assert _is_ok(_post(anon_client, vk_channel.pk, event))
    assert _messages(vk_channel) == []


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"[1, 2]", 400),
        (b'{"object": {}}', 400),
        (b"", 400),
        (b'{"type": "message_new", "pad": "' + b"x" * (1024 * 1024) + b'"}', 413),
    ],
)
def test_bad_bodies_get_a_4xx_and_nothing_stored(
    anon_client: APIClient, vk_channel: Channel, body: bytes, status: int
) -> None:
    response = _post(anon_client, vk_channel.pk, body)
    assert response.status_code == status and "detail" in response.json()
    assert _messages(vk_channel) == []


def test_unknown_channels_are_404_and_nothing_stored(anon_client: APIClient, vk_channel: Channel) -> None:
    webhook_channel = ChannelFactory()
    inactive = Channel.objects.get(pk=vk_channel.pk)
    event = fixture("callback_message_new.json")
    for channel_id in (ObjectId(), "not-an-id", webhook_channel.pk):
        response = _post(anon_client, channel_id, event)
        assert response.status_code == 404 and response.json() == {"detail": "Channel not found"}
    Channel.objects.filter(pk=inactive.pk).update(is_active=False)
    assert _post(anon_client, vk_channel.pk, event).status_code == 404
    assert not Message.objects.filter(message_id=f"vk-{GROUP_ID}-4242").exists()


def test_a_database_outage_is_503_and_the_resend_is_stored(
    anon_client: APIClient, vk_channel: Channel, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(_: Any) -> Any:
        raise ServerSelectionTimeoutError("no server")

    event = fixture("callback_message_new.json")
    with monkeypatch.context() as patched:
        patched.setattr(views, "inbound_ingest", down)
        response = _post(anon_client, vk_channel.pk, event)
    assert response.status_code == 503 and response.content != b"ok"
    assert not event_seen(channel_id=str(vk_channel.pk), event_id=event["event_id"])
    # VK resends the event it got no `ok` for: stored now.
    assert _is_ok(_post(anon_client, vk_channel.pk, event)) and len(_messages(vk_channel)) == 1


def test_the_event_log_expires(anon_client: APIClient, vk_channel: Channel) -> None:
    assert _is_ok(_post(anon_client, vk_channel.pk, fixture("callback_message_new.json")))
    indexes = mongo_collection(COLLECTION).index_information()
    assert indexes[TTL_INDEX]["expireAfterSeconds"] == 0


def test_an_event_of_an_api_version_before_5_103_is_read_too(anon_client: APIClient, vk_channel: Channel) -> None:
    event = _event("callback_message_new.json", v="5.101")
    event["object"] = event["object"]["message"]
    assert _is_ok(_post(anon_client, vk_channel.pk, event))
    assert [m.message_id for m in _messages(vk_channel)] == [f"vk-{GROUP_ID}-4242"]


def test_a_chunked_body_is_read(vk_channel: Channel) -> None:
    from io import BytesIO

    from django.test import Client

    body = json.dumps(fixture("callback_message_new.json")).encode()
    response = Client().generic(
        "POST",
        _url(vk_channel.pk),
        data=b"",
        content_type="application/json",
        HTTP_TRANSFER_ENCODING="chunked",
        **{"wsgi.input": BytesIO(body)},
    )
    assert _is_ok(response) and len(_messages(vk_channel)) == 1
