"""The widget's endpoints: CORS, visitors' tokens, bounds, rate limits, the history, and the
outbound send's events."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from channels_app.kinds import kind_get
from channels_app.kinds.webchat.events import EVENTS_COLLECTION
from channels_app.kinds.webchat.tests.factories import (
    SITE,
    post_message,
    session_token,
    webchat_channel_create,
    widget_api,
)
from channels_app.kinds.webchat.visitors import Visitor, visitor_from_token, visitor_token
from channels_app.models import Channel
from channels_app.tests.factories import ChannelFactory
from core.mongo import mongo_collection
from dialogues.models import Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def client() -> Client:
    return Client()


@pytest.fixture
def channel() -> Channel:
    return webchat_channel_create(origins=[SITE, "http://localhost:3000"], title="Shop chat")


def _events() -> list[dict[str, Any]]:
    return list(mongo_collection(EVENTS_COLLECTION).find({}))


def _nothing_stored() -> None:
    assert Message.objects.count() == 0
    assert _events() == []


# --- Creating one ---------------------------------------------------------------------------


def test_the_api_creates_a_webchat_channel(api_client: Any) -> None:
    from chatbots.tests.factories import ChatBotFactory

    bot = ChatBotFactory()
    response = api_client.post(
        "/api/channels/kinds/webchat/",
        {
            "name": "Site",
            "chat_bot_id": str(bot.pk),
            "allowed_origins": ["HTTPS://Shop.Example.com:443", "http://localhost:3000/"],
            "title": "Ask us",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    channel = Channel.objects.get(pk=response.json()["id"])
    assert channel.kind == "webchat"
    assert channel.kind_options == {"allowed_origins": [SITE, "http://localhost:3000"], "title": "Ask us"}
    assert channel.settings.url == SITE
    assert response.json()["options"]["allowed_origins"] == [SITE, "http://localhost:3000"]


@pytest.mark.parametrize(
    "origins",
    [
        [],
        ["shop.example.com"],
        ["https://shop.example.com/path"],
        ["ftp://x.example"],
        [f"https://s{n}.example" for n in range(21)],
    ],
)
def test_the_api_refuses_bad_origins(api_client: Any, origins: list[str]) -> None:
    from chatbots.tests.factories import ChatBotFactory

    bot = ChatBotFactory()
    body = {"name": "Site", "chat_bot_id": str(bot.pk), "allowed_origins": origins}
    response = api_client.post("/api/channels/kinds/webchat/", body, format="json")
    assert response.status_code == 400 and "allowed_origins" in response.json()
    assert not Channel.objects.filter(kind="webchat").exists()


def test_a_title_over_80_characters_is_refused(api_client: Any) -> None:
    from chatbots.tests.factories import ChatBotFactory

    body = {"name": "S", "chat_bot_id": str(ChatBotFactory().pk), "allowed_origins": [SITE], "title": "x" * 81}
    assert api_client.post("/api/channels/kinds/webchat/", body, format="json").status_code == 400


# --- CORS -----------------------------------------------------------------------------------


def test_an_allowed_origin_is_answered_with_cors_headers(client: Client, channel: Channel) -> None:
    response = client.post(
        f"{widget_api(channel)}/session", data=b"", content_type="application/json", HTTP_ORIGIN=SITE
    )
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == SITE
    assert "Origin" in response["Vary"]
    data = response.json()
    assert visitor_from_token(str(channel.pk), data["visitor"]) is not None
    assert data["title"] == "Shop chat" and data["stream_url"].startswith("http://")


def test_a_preflight_from_an_allowed_origin_is_answered(client: Client, channel: Channel) -> None:
    response = client.options(
        f"{widget_api(channel)}/messages",
        HTTP_ORIGIN="http://localhost:3000",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type,x-webchat-visitor",
    )
    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "X-Webchat-Visitor" in response["Access-Control-Allow-Headers"]
    assert "POST" in response["Access-Control-Allow-Methods"]


def test_a_disallowed_origin_is_refused_and_nothing_is_stored(client: Client, channel: Channel) -> None:
    token = session_token(client, channel)
    evil = "https://evil.example"
    refused = client.post(
        f"{widget_api(channel)}/session", data=b"{}", content_type="application/json", HTTP_ORIGIN=evil
    )
    assert refused.status_code == 403 and "origin" in refused.json()["detail"]
    assert "Access-Control-Allow-Origin" not in refused
    assert client.options(f"{widget_api(channel)}/messages", HTTP_ORIGIN=evil).status_code == 403
    sent = post_message(client, channel, token, {"text": "hi", "client_id": str(uuid.uuid4())}, origin=evil)
    assert sent.status_code == 403
    read = client.get(f"{widget_api(channel)}/messages", HTTP_ORIGIN=evil, HTTP_X_WEBCHAT_VISITOR=token)
    assert read.status_code == 403
    _nothing_stored()


# --- Visitors -------------------------------------------------------------------------------


def test_messages_need_this_channels_visitor_token(client: Client, channel: Channel) -> None:
    other = webchat_channel_create(origins=[SITE])
    other_token = session_token(client, other)
    forged = visitor_token("0" * 24, Visitor(id="abcdefgh12345678"))  # signed for another channel id
    body = {"text": "hi", "client_id": str(uuid.uuid4())}
    for token in ("", "garbage", other_token, forged, other_token[:-2] + "xx"):
        response = post_message(client, channel, token, body)
        assert response.status_code == 401, token
        assert response.json()["detail"].startswith("A valid visitor token")
        assert client.get(f"{widget_api(channel)}/messages", HTTP_X_WEBCHAT_VISITOR=token).status_code == 401
    _nothing_stored()


def test_a_kept_token_continues_the_same_visitor(client: Client, channel: Channel) -> None:
    token = session_token(client, channel)
    again = client.post(
        f"{widget_api(channel)}/session", data=b"{}", content_type="application/json", HTTP_X_WEBCHAT_VISITOR=token
    )
    assert again.json()["visitor"] == token


def test_unknown_inactive_or_other_kind_channels_are_404(client: Client) -> None:
    inactive = webchat_channel_create(is_active=False)
    webhook = ChannelFactory()
    for ref in ("nope", "0" * 24, str(inactive.pk), str(webhook.pk)):
        response = client.post(f"/channels/webchat/{ref}/session", data=b"{}", content_type="application/json")
        assert response.status_code == 404 and response.json() == {"detail": "Chat not found"}
    _nothing_stored()


# --- Sending --------------------------------------------------------------------------------


def test_a_message_is_stored_once_whatever_the_retries(client: Client, channel: Channel) -> None:
    token = session_token(client, channel)
    visitor = visitor_from_token(str(channel.pk), token)
    assert visitor is not None
    client_id = str(uuid.uuid4())
    first = post_message(client, channel, token, {"text": "Do you ship to Riga?", "client_id": client_id})
    assert first.status_code == 201 and first.json() == {"id": f"web-{client_id}", "duplicate": False}
    assert first["Access-Control-Allow-Origin"] == SITE
    again = post_message(client, channel, token, {"text": "Do you ship to Riga?", "client_id": client_id})
    assert again.status_code == 200 and again.json()["duplicate"] is True
    [stored] = Message.objects.filter(channel_id=channel.pk)
    assert (stored.message_id, stored.text, stored.role) == (f"web-{client_id}", "Do you ship to Riga?", "USER")
    assert stored.dialogue.chat_id == visitor.chat_id == f"web-{visitor.id}"
    # The visitor's other tabs are told once.
    [event] = _events()
    assert (event["chat_id"], event["role"], event["text"]) == (visitor.chat_id, "user", "Do you ship to Riga?")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"[1, 2]", 400),
        ({"client_id": "3b7e4f0e-7a51-4f38-9f3d-0c1d2e3f4a5b"}, 400),
        ({"text": "   ", "client_id": "3b7e4f0e-7a51-4f38-9f3d-0c1d2e3f4a5b"}, 400),
        ({"text": "x" * 4001, "client_id": "3b7e4f0e-7a51-4f38-9f3d-0c1d2e3f4a5b"}, 400),
        ({"text": 5, "client_id": "3b7e4f0e-7a51-4f38-9f3d-0c1d2e3f4a5b"}, 400),
        ({"text": "hi"}, 400),
        ({"text": "hi", "client_id": "not-a-uuid"}, 400),
        ({"text": "hi", "client_id": "3b7e4f0e" * 10}, 400),
        ({"text": "é" * 4000, "client_id": "3b7e4f0e-7a51-4f38-9f3d-0c1d2e3f4a5b", "pad": "x" * 9000}, 413),
    ],
)
def test_bad_input_is_refused_and_nothing_is_stored(client: Client, channel: Channel, body: Any, status: int) -> None:
    token = session_token(client, channel)
    response = post_message(client, channel, token, body)
    assert response.status_code == status and "detail" in response.json()
    _nothing_stored()


def test_the_longest_text_is_taken(client: Client, channel: Channel) -> None:
    token = session_token(client, channel)
    response = post_message(client, channel, token, {"text": "я" * 4000, "client_id": str(uuid.uuid4())})
    assert response.status_code == 201
    assert Message.objects.get().text == "я" * 4000


# --- Rate limits ----------------------------------------------------------------------------


def test_a_visitor_over_its_rate_is_refused_with_retry_after(client: Client, channel: Channel, settings: Any) -> None:
    settings.WEBCHAT_VISITOR_MESSAGE_RATE = "2/minute"
    token = session_token(client, channel)
    for n in range(2):
        assert (
            post_message(client, channel, token, {"text": f"m{n}", "client_id": str(uuid.uuid4())}).status_code == 201
        )
    refused = post_message(client, channel, token, {"text": "m3", "client_id": str(uuid.uuid4())})
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
    assert refused["Access-Control-Allow-Origin"] == SITE  # the widget can read why
    assert Message.objects.count() == 2
    # Another visitor is not held back by this one.
    other = session_token(client, channel)
    assert post_message(client, channel, other, {"text": "hi", "client_id": str(uuid.uuid4())}).status_code == 201


def test_an_address_over_its_rates_is_refused(client: Client, channel: Channel, settings: Any) -> None:
    settings.WEBCHAT_SESSION_RATE = "2/hour"
    settings.WEBCHAT_ADDRESS_MESSAGE_RATE = "3/minute"
    first, second = session_token(client, channel), session_token(client, channel)
    url = f"{widget_api(channel)}/session"
    refused = client.post(url, data=b"{}", content_type="application/json", HTTP_ORIGIN=SITE)
    assert refused.status_code == 429 and "Retry-After" in refused
    # A visitor who has a token is not a new chat: it continues.
    kept = client.post(url, data=b"{}", content_type="application/json", HTTP_X_WEBCHAT_VISITOR=first)
    assert kept.status_code == 200
    for n, token in enumerate((first, second, first)):
        assert post_message(client, channel, token, {"text": f"{n}", "client_id": str(uuid.uuid4())}).status_code == 201
    assert post_message(client, channel, second, {"text": "4", "client_id": str(uuid.uuid4())}).status_code == 429
    assert Message.objects.count() == 3


# --- The history ----------------------------------------------------------------------------


def test_a_visitor_reads_its_own_conversation_only(client: Client, channel: Channel, drain: Callable[[], None]) -> None:
    alice, bob = session_token(client, channel), session_token(client, channel)
    assert (
        post_message(client, channel, alice, {"text": "Alice here", "client_id": str(uuid.uuid4())}).status_code == 201
    )
    drain()  # the worker replies (the mock LLM) and delivers through the kind's send
    read = client.get(f"{widget_api(channel)}/messages", HTTP_ORIGIN=SITE, HTTP_X_WEBCHAT_VISITOR=alice)
    assert read.status_code == 200 and read["Access-Control-Allow-Origin"] == SITE
    messages = read.json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[0]["text"] == "Alice here" and messages[1]["text"]
    assert set(messages[0]) == {"id", "role", "text", "at"}
    reply = Message.objects.get(role="ASSISTANT")
    assert reply.delivery_state == "delivered"
    # The reply went out as an event for Alice's conversation.
    [event] = [e for e in _events() if e.get("role") == "assistant"]
    assert (event["chat_id"], event["text"], event["message_id"]) == (
        Message.objects.get(role="USER").dialogue.chat_id,
        reply.text,
        reply.message_id,
    )
    assert client.get(f"{widget_api(channel)}/messages", HTTP_X_WEBCHAT_VISITOR=bob).json() == {"messages": []}


def test_a_reply_cancelled_by_a_take_over_is_never_in_the_visitors_history(
    client: Client, channel: Channel, drain: Callable[[], None]
) -> None:
    """The bug: the history showed every bot reply stored, the one an operator's take-over
    cancelled (never sent) too, so a reload told the visitor what the bot would have said."""
    from dialogues.models import Dialogue
    from dialogues.services_operators import dialogue_pause

    alice = session_token(client, channel)
    assert post_message(client, channel, alice, {"text": "Hi", "client_id": str(uuid.uuid4())}).status_code == 201
    drain()
    reply = Message.objects.get(role="ASSISTANT")
    # Stored but not delivered when the operator takes over (as when the channel was down).
    Message.objects.filter(pk=reply.pk).update(delivery_state="failed")
    dialogue_pause(dialogue=Dialogue.objects.get(pk=reply.dialogue_id), minutes=None)
    assert Message.objects.get(pk=reply.pk).delivery_state == "cancelled"
    read = client.get(f"{widget_api(channel)}/messages", HTTP_ORIGIN=SITE, HTTP_X_WEBCHAT_VISITOR=alice)
    assert [m["role"] for m in read.json()["messages"]] == ["user"]


def test_the_history_is_the_newest_50_oldest_first(client: Client, channel: Channel, settings: Any) -> None:
    settings.WEBCHAT_VISITOR_MESSAGE_RATE = "0"
    settings.WEBCHAT_ADDRESS_MESSAGE_RATE = "0"
    token = session_token(client, channel)
    for n in range(55):
        assert (
            post_message(client, channel, token, {"text": f"m{n}", "client_id": str(uuid.uuid4())}).status_code == 201
        )
    messages = client.get(f"{widget_api(channel)}/messages", HTTP_X_WEBCHAT_VISITOR=token).json()["messages"]
    assert [m["text"] for m in messages] == [f"m{n}" for n in range(5, 55)]


# --- Outbound -------------------------------------------------------------------------------


def test_the_send_writes_one_event_however_often_it_is_retried(channel: Channel) -> None:
    kind = kind_get("webchat")
    payload = {"type": "message", "message_id": "r-1", "role": "EMPLOYEE", "text": "Ann here", "chat_id": "web-abc"}
    for _ in range(3):
        outcome = kind.send(channel=channel, payload=payload, idempotency_key="key-1", log_context={})
        assert outcome.ok and outcome.status_code == 200
    [event] = _events()
    assert (event["channel_id"], event["chat_id"], event["role"], event["text"], event["message_id"]) == (
        str(channel.pk),
        "web-abc",
        "employee",
        "Ann here",
        "r-1",
    )
    names = {index["name"] for index in mongo_collection(EVENTS_COLLECTION).list_indexes()}
    assert {"webchat_events_ttl", "webchat_events_at"} <= names


def test_typing_is_an_event(channel: Channel) -> None:
    outcome = kind_get("webchat").typing_send(channel=channel, chat_id="web-abc", state="on", log_context={})
    assert outcome is not None and outcome.ok
    [event] = _events()
    assert (event["type"], event["state"], event["chat_id"]) == ("typing", "on", "web-abc")


# --- The script, the admin ------------------------------------------------------------------


def test_the_script_is_served_as_cacheable_javascript(client: Client) -> None:
    response = client.get("/channels/webchat/webchat.js")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    assert "max-age" in response["Cache-Control"]
    body = response.content.decode()
    assert "textContent" in body and "innerHTML" not in body
    assert "http://" not in body.replace("http://www.w3.org", "") and "https://" not in body.split("*/", 1)[1]


def test_the_admin_panel_and_the_try_page(client: Client, channel: Channel, staff_user: Any) -> None:
    client.force_login(staff_user)
    page = client.get(f"/admin/channels_app/channel/{channel.pk}/change/").content.decode()
    assert f"data-channel=&quot;{channel.pk}&quot;" in page and "/channels/webchat/webchat.js" in page
    assert f"/channels/webchat/{channel.pk}/try" in page and "Open web chat" in page
    assert SITE in page
    tried = client.get(f"{widget_api(channel)}/try")
    assert tried.status_code == 200
    html = tried.content.decode()
    assert f'data-channel="{channel.pk}"' in html and "data-visitor=" in html
    token = html.split('data-visitor="', 1)[1].split('"', 1)[0]
    visitor = visitor_from_token(str(channel.pk), token)
    assert visitor is not None and visitor.try_origin == "http://testserver"
    # The try page's own origin is allowed for its token only.
    body = {"text": "from the admin", "client_id": str(uuid.uuid4())}
    assert post_message(Client(), channel, token, body, origin="http://testserver").status_code == 201
    plain = session_token(Client(), channel)
    assert post_message(Client(), channel, plain, body, origin="http://testserver").status_code == 403


def test_the_try_page_is_for_staff_only(client: Client, channel: Channel) -> None:
    response = client.get(f"{widget_api(channel)}/try")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_an_operators_message_reaches_the_visitors_widget(
    client: Client, channel: Channel, drain: Callable[[], None], staff_user: Any
) -> None:
    from dialogues.models import Dialogue
    from dialogues.services_operators import dialogue_pause, operator_message_send

    token = session_token(client, channel)
    assert (
        post_message(client, channel, token, {"text": "A human, please", "client_id": str(uuid.uuid4())}).status_code
        == 201
    )
    drain()
    dialogue = dialogue_pause(dialogue=Dialogue.objects.get(channel_id=channel.pk))
    operator_message_send(dialogue=dialogue, author=staff_user, text="Ann here, how can I help?")
    drain()
    [event] = [e for e in _events() if e.get("role") == "employee"]
    assert (event["chat_id"], event["text"]) == (dialogue.chat_id, "Ann here, how can I help?")
    messages = client.get(f"{widget_api(channel)}/messages", HTTP_X_WEBCHAT_VISITOR=token).json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "employee"]
