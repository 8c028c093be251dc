from __future__ import annotations

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from channels_app.models import Channel
from channels_app.tests.factories import ChannelFactory
from chatbots.tests.factories import ChatBotFactory
from dialogues.models import Dialogue, Message
from dialogues.tests.factories import DialogueFactory, MessageFactory

pytestmark = pytest.mark.django_db

MISSING_ID = "0123456789abcdef01234567"
CHANNEL_KEYS = {"id", "name", "chat_bot_id", "url", "kind", "options", "is_active", "typing_events", "token"}


def _create_body(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {"name": "Web", "chat_bot_id": str(ChatBotFactory().pk), "url": "https://a.example/h"}
    body.update(overrides)
    return body


def test_create_returns_the_flat_contract(api_client: APIClient) -> None:
    bot = ChatBotFactory()
    body = {"name": "Web", "chat_bot_id": str(bot.pk), "url": "https://chat.example.com/hook", "is_active": False}
    response = api_client.post("/api/channels/", body, format="json")
    assert response.status_code == 201
    data = response.json()
    assert set(data) == CHANNEL_KEYS | {"signing_secret"}  # the signing secret: in this response only
    assert data["name"] == "Web" and data["chat_bot_id"] == str(bot.pk) and data["is_active"] is False
    assert data["url"] == "https://chat.example.com/hook" and len(data["token"]) >= 32
    stored = Channel.objects.get(pk=data["id"])
    assert stored.chat_bot_id == bot.pk
    assert stored.settings.url == data["url"] and stored.settings.token == data["token"]


def test_typing_events_are_off_unless_asked_for_and_can_be_switched(api_client: APIClient) -> None:
    plain = api_client.post("/api/channels/", _create_body(), format="json").json()
    assert plain["typing_events"] is False and Channel.objects.get(pk=plain["id"]).typing_events is False
    created = api_client.post("/api/channels/", _create_body(typing_events=True), format="json")
    assert created.status_code == 201 and created.json()["typing_events"] is True
    channel_id = created.json()["id"]
    response = api_client.patch(f"/api/channels/{channel_id}", {"typing_events": False}, format="json")
    assert response.status_code == 200 and response.json()["typing_events"] is False
    assert Channel.objects.get(pk=channel_id).typing_events is False
    # PUT without it leaves it as it is.
    Channel.objects.filter(pk=channel_id).update(typing_events=True)
    body = {"name": "Web", "url": "https://a.example/h"}
    response = api_client.put(f"/api/channels/{channel_id}", body, format="json")
    assert response.status_code == 200 and response.json()["typing_events"] is True


@pytest.mark.parametrize("value", ["true", 1, None])
def test_typing_events_must_be_a_boolean(api_client: APIClient, value: object) -> None:
    response = api_client.post("/api/channels/", _create_body(typing_events=value), format="json")
    assert response.status_code == 400 and "typing_events" in response.json()


def test_create_defaults_to_active_without_a_slash(api_client: APIClient) -> None:
    body = _create_body()
    body.pop("name")
    response = api_client.post("/api/channels", {**body, "name": "x"}, format="json")
    assert response.status_code == 201
    assert response.json()["is_active"] is True


def test_list_is_a_plain_array(api_client: APIClient) -> None:
    first, second = ChannelFactory(), ChannelFactory()
    response = api_client.get("/api/channels/")
    assert response.status_code == 200
    data = response.json()
    assert isinstance(data, list)
    assert [c["id"] for c in data] == [str(second.pk), str(first.pk)]
    assert all(set(c) == CHANNEL_KEYS for c in data)
    assert api_client.get("/api/channels").json() == data


def test_list_filters(api_client: APIClient) -> None:
    bot = ChatBotFactory()
    active = ChannelFactory(chat_bot=bot)
    inactive = ChannelFactory(chat_bot=bot, is_active=False)
    other = ChannelFactory()

    def ids(query: str) -> set[str]:
        response = api_client.get(f"/api/channels/?{query}")
        assert response.status_code == 200
        return {c["id"] for c in response.json()}

    assert ids(f"chat_bot_id={bot.pk}") == {str(active.pk), str(inactive.pk)}
    assert ids("active=true") == {str(active.pk), str(other.pk)}
    assert ids("active=false") == {str(inactive.pk)}
    assert ids(f"chat_bot_id={bot.pk}&active=false") == {str(inactive.pk)}
    assert ids(f"chat_bot_id={MISSING_ID}") == set()


def test_list_paginates_on_request(api_client: APIClient) -> None:
    channels = [ChannelFactory() for _ in range(3)]
    data = api_client.get("/api/channels/?limit=2").json()
    assert data["count"] == 3 and len(data["results"]) == 2 and data["next"]
    assert [c["id"] for c in api_client.get("/api/channels/?offset=2").json()["results"]] == [str(channels[0].pk)]


@pytest.mark.parametrize(
    ("query", "field"),
    [("active=maybe", "active"), ("active=", "active"), ("chat_bot_id=xyz", "chat_bot_id"), ("limit=-3", "limit")],
)
def test_bad_list_filters_are_400(api_client: APIClient, query: str, field: str) -> None:
    response = api_client.get(f"/api/channels/?{query}")
    assert response.status_code == 400
    assert field in response.json()


@pytest.mark.parametrize("path", ["/api/channels/{id}", "/api/channels/{id}/"])
def test_retrieve(api_client: APIClient, path: str) -> None:
    channel = ChannelFactory()
    response = api_client.get(path.format(id=channel.pk))
    assert response.status_code == 200
    assert response.json() == {
        "id": str(channel.pk),
        "name": channel.name,
        "chat_bot_id": str(channel.chat_bot_id),
        "url": channel.settings.url,
        "kind": "webhook",
        "options": {},
        "is_active": True,
        "typing_events": False,
        "token": channel.settings.token,
    }


@pytest.mark.parametrize("bad_id", ["nope", MISSING_ID, "6" * 23, "zz" * 12])
@pytest.mark.parametrize(
    ("method", "suffix"),
    [("get", ""), ("put", ""), ("patch", "/"), ("delete", ""), ("get", "/dialogue"), ("post", "/rotate_token")],
)
def test_malformed_or_unknown_id_is_404(api_client: APIClient, bad_id: str, method: str, suffix: str) -> None:
    response = getattr(api_client, method)(f"/api/channels/{bad_id}{suffix}", {}, format="json")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_put_replaces_and_patch_changes_part(api_client: APIClient) -> None:
    channel = ChannelFactory()
    token = channel.settings.token
    response = api_client.put(
        f"/api/channels/{channel.pk}",
        {"name": "Renamed", "url": "http://new.example/h", "is_active": False},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["name"] == "Renamed" and response.json()["is_active"] is False
    response = api_client.patch(f"/api/channels/{channel.pk}/", {"is_active": True}, format="json")
    assert response.status_code == 200
    stored = Channel.objects.get(pk=channel.pk)
    assert (stored.name, stored.settings.url, stored.is_active) == ("Renamed", "http://new.example/h", True)
    assert stored.settings.token == token


def test_put_accepts_an_echoed_body_but_not_another_bot(api_client: APIClient) -> None:
    channel = ChannelFactory()
    echoed = api_client.get(f"/api/channels/{channel.pk}").json()
    assert api_client.put(f"/api/channels/{channel.pk}", {**echoed, "name": "Same"}, format="json").status_code == 200
    moved = {**echoed, "chat_bot_id": str(ChatBotFactory().pk)}
    response = api_client.put(f"/api/channels/{channel.pk}", moved, format="json")
    # A valid body that the channel's state refuses: a conflict, naming the field.
    assert response.status_code == 409
    assert response.json() == {"chat_bot_id": ["A channel cannot move to another bot."]}
    patched = api_client.patch(f"/api/channels/{channel.pk}", {"chat_bot_id": moved["chat_bot_id"]}, format="json")
    assert patched.status_code == 409
    assert Channel.objects.get(pk=channel.pk).chat_bot_id == channel.chat_bot_id


def test_put_needs_name_and_url(api_client: APIClient) -> None:
    channel = ChannelFactory()
    response = api_client.put(f"/api/channels/{channel.pk}", {"is_active": False}, format="json")
    assert response.status_code == 400
    assert {"name", "url"} <= set(response.json())
    assert Channel.objects.get(pk=channel.pk).is_active is True


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"chat_bot_id": "not-an-id"}, "chat_bot_id"),
        ({"chat_bot_id": 12}, "chat_bot_id"),
        ({"chat_bot_id": None}, "chat_bot_id"),
        ({"url": "/relative/path"}, "url"),
        ({"url": "ftp://files.example/h"}, "url"),
        ({"url": "https://"}, "url"),
        ({"url": "javascript:alert(1)"}, "url"),
        ({"url": "https://a.example/" + "x" * 2040}, "url"),
        ({"url": "https://a.example/with space"}, "url"),
        ({"url": ""}, "url"),
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": ["list"]}, "name"),
        ({"name": "two\r\nlines"}, "name"),
        ({"is_active": "maybe"}, "is_active"),
        ({"is_active": None}, "is_active"),
    ],
)
def test_bad_create_input_is_400_naming_the_field(api_client: APIClient, overrides: dict, field: str) -> None:
    response = api_client.post("/api/channels/", _create_body(**overrides), format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert Channel.objects.count() == 0


def test_a_well_formed_unknown_bot_is_404_naming_the_field(api_client: APIClient) -> None:
    """The schema accepts any well-formed id; that it names no bot is a 404 (documented), as for
    an unknown id in a path, not a 400 for a body the schema calls valid."""
    response = api_client.post("/api/channels/", _create_body(chat_bot_id=MISSING_ID), format="json")
    assert response.status_code == 404
    assert response.json() == {"chat_bot_id": ["Unknown chat bot."]}
    # A body also invalid in form is a 400 first.
    bad = api_client.post("/api/channels/", _create_body(chat_bot_id=MISSING_ID, name=""), format="json")
    assert bad.status_code == 400 and "name" in bad.json()
    assert Channel.objects.count() == 0


def test_url_of_exactly_2048_characters_is_accepted(api_client: APIClient) -> None:
    url = "https://a.example/" + "x" * (2048 - len("https://a.example/"))
    response = api_client.post("/api/channels/", _create_body(url=url), format="json")
    assert response.status_code == 201
    assert response.json()["url"] == url


@pytest.mark.parametrize("body", ["[1, 2]", '"text"', "{broken", "null"])
def test_non_object_bodies_are_400(api_client: APIClient, body: str) -> None:
    response = api_client.post("/api/channels/", body, content_type="application/json")
    assert response.status_code == 400


@pytest.mark.parametrize("overrides", [{"url": "not a url"}, {"name": ""}, {"is_active": "x"}, {"chat_bot_id": "x"}])
def test_bad_update_input_is_400(api_client: APIClient, overrides: dict) -> None:
    channel = ChannelFactory()
    response = api_client.patch(f"/api/channels/{channel.pk}", overrides, format="json")
    assert response.status_code == 400
    assert next(iter(overrides)) in response.json()


@override_settings(CHANNEL_ALLOW_PRIVATE_URLS=False)
@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000/h", "http://localhost/h", "http://10.1.2.3/h", "http://[::1]/h"]
)
def test_private_urls_are_refused_unless_allowed(api_client: APIClient, url: str) -> None:
    response = api_client.post("/api/channels/", _create_body(url=url), format="json")
    assert response.status_code == 400
    assert "private" in response.json()["url"][0]
    channel = ChannelFactory()
    assert api_client.patch(f"/api/channels/{channel.pk}", {"url": url}, format="json").status_code == 400
    with override_settings(CHANNEL_ALLOW_PRIVATE_URLS=True):
        assert api_client.post("/api/channels/", _create_body(url=url), format="json").status_code == 201


def test_delete_removes_the_channel_and_its_dialogues(api_client: APIClient) -> None:
    message = MessageFactory()
    channel = message.channel
    kept = MessageFactory()
    response = api_client.delete(f"/api/channels/{channel.pk}")
    assert response.status_code == 204
    assert not Channel.objects.filter(pk=channel.pk).exists()
    assert not Dialogue.objects.filter(channel=channel.pk).exists()
    assert not Message.objects.filter(channel=channel.pk).exists()
    assert Message.objects.filter(pk=kept.pk).exists()
    assert api_client.delete(f"/api/channels/{channel.pk}").status_code == 404


def test_rotate_token(api_client: APIClient) -> None:
    channel = ChannelFactory()
    old = channel.settings.token
    response = api_client.post(f"/api/channels/{channel.pk}/rotate_token")
    assert response.status_code == 200
    new = response.json()["token"]
    assert new != old and set(response.json()) == CHANNEL_KEYS
    assert Channel.objects.get(pk=channel.pk).settings.token == new


def test_dialogue_of_a_silent_channel_is_empty(api_client: APIClient) -> None:
    channel = ChannelFactory()
    response = api_client.get(f"/api/channels/{channel.pk}/dialogue")
    assert response.status_code == 200
    assert response.json() == {
        "id": None,
        "chat_bot_id": str(channel.chat_bot_id),
        "channel_id": str(channel.pk),
        "chat_id": str(channel.pk),
        "message_list": [],
        "has_more": False,
    }


def test_dialogue_lists_messages_oldest_first(api_client: APIClient) -> None:
    dialogue = DialogueFactory()
    user = MessageFactory(dialogue=dialogue, message_id="m-1", text="Hello")
    reply = MessageFactory(
        dialogue=dialogue, message_id="r-1", role=Message.Role.ASSISTANT, text="Hi", in_reply_to="m-1"
    )
    # Another chat_id on the same channel (the channel_id extension) is not this dialogue.
    MessageFactory(dialogue=DialogueFactory(channel=dialogue.channel, chat_id="elsewhere"))
    response = api_client.get(f"/api/channels/{dialogue.channel_id}/dialogue/")
    assert response.status_code == 200
    data = response.json()
    assert data["id"] == str(dialogue.pk) and data["chat_id"] == str(dialogue.channel_id)
    assert [(m["message_id"], m["role"], m["text"]) for m in data["message_list"]] == [
        (user.message_id, "USER", "Hello"),
        (reply.message_id, "ASSISTANT", "Hi"),
    ]
    assert data["message_list"][1]["in_reply_to"] == "m-1"
    assert data["message_list"][0]["created_at"].endswith("Z")


def test_dialogue_cursor_paging(api_client: APIClient) -> None:
    dialogue = DialogueFactory()
    ids = [MessageFactory(dialogue=dialogue, message_id=f"m{i}").message_id for i in range(7)]
    url = f"/api/channels/{dialogue.channel_id}/dialogue"

    def page(query: str) -> tuple[list[str], bool]:
        response = api_client.get(f"{url}?{query}")
        assert response.status_code == 200, response.json()
        return [m["message_id"] for m in response.json()["message_list"]], response.json()["has_more"]

    assert page("limit=3") == (ids[4:], True)
    assert page("limit=3&before=m4") == (ids[1:4], True)
    assert page("limit=3&before=m1") == (ids[:1], False)
    assert page("limit=3&after=m1") == (ids[2:5], True)
    assert page("limit=3&after=m3") == (ids[4:], False)
    assert page("after=m6") == ([], False)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("before=m0&after=m0", "after"),
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("limit=1001", "limit"),
        ("before=" + "x" * 300, "before"),
    ],
)
def test_bad_dialogue_queries_are_400(api_client: APIClient, query: str, field: str) -> None:
    dialogue = DialogueFactory()
    MessageFactory(dialogue=dialogue, message_id="m0")
    response = api_client.get(f"/api/channels/{dialogue.channel_id}/dialogue?{query}")
    assert response.status_code == 400
    assert field in response.json()


@pytest.mark.parametrize(("query", "field"), [("before=unknown", "before"), ("after=unknown", "after")])
def test_a_dialogue_cursor_of_no_message_is_404_naming_it(api_client: APIClient, query: str, field: str) -> None:
    dialogue = DialogueFactory()
    MessageFactory(dialogue=dialogue, message_id="m0")
    response = api_client.get(f"/api/channels/{dialogue.channel_id}/dialogue?{query}")
    assert response.status_code == 404
    assert response.json() == {field: ["No message with this message_id in the dialogue."]}


def test_anonymous_is_401(anon_client: APIClient) -> None:
    channel = ChannelFactory()
    for method, path in [
        ("get", "/api/channels/"),
        ("post", "/api/channels/"),
        ("get", f"/api/channels/{channel.pk}"),
        ("put", f"/api/channels/{channel.pk}"),
        ("patch", f"/api/channels/{channel.pk}"),
        ("delete", f"/api/channels/{channel.pk}"),
        ("get", f"/api/channels/{channel.pk}/dialogue"),
        ("post", f"/api/channels/{channel.pk}/rotate_token"),
    ]:
        response = getattr(anon_client, method)(path, {}, format="json")
        assert response.status_code == 401, (method, path)
        assert response.json() == {"detail": "Authentication credentials were not provided."}
    assert Channel.objects.get(pk=channel.pk).settings.token == channel.settings.token


@pytest.mark.parametrize(
    "path", ["/api/channels/", "/api/channels/{id}", "/api/channels/nope", "/api/channels/{id}/dialogue"]
)
def test_options_and_head_answer_without_error(api_client: APIClient, path: str) -> None:
    channel = ChannelFactory()
    url = path.format(id=channel.pk)
    assert api_client.options(url).status_code in (200, 404)
    assert api_client.head(url).status_code in (200, 404)


def test_browsable_api_renders_forms_for_staff(api_client: APIClient) -> None:
    channel = ChannelFactory()
    for url in ["/api/channels/", f"/api/channels/{channel.pk}", f"/api/channels/{channel.pk}/dialogue"]:
        response = api_client.get(url, HTTP_ACCEPT="text/html")
        assert response.status_code == 200, url
        assert b"<html" in response.content
