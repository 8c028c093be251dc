"""The operators' inbox: what needs a human enters it (a take-over, the bot asking, a reply that
could not be delivered, a message the LLM could not answer), who handles it, notes, resolving;
and its list is read once per refresh whatever the number of open tabs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from channels_app.tests.factories import ChannelFactory
from chatbots.models import ChatBot
from chatbots.tests.factories import ChatBotFactory
from devtools.receiver import ChannelReceiver
from dialogues import selectors_inbox
from dialogues.models import Dialogue, Message
from dialogues.services_operators import dialogue_pause
from dialogues.tests.conftest import customer_message

pytestmark = pytest.mark.django_db

Drain = Callable[[], None]


@pytest.fixture(autouse=True)
def _fresh_inbox() -> None:
    selectors_inbox.inbox_forget()


@pytest.fixture
def operator(client: Client, staff_user: Any) -> Client:
    client.force_login(staff_user)
    return client


def _post(bot: ChatBot, channel: Any, message_id: str, text: str) -> None:
    client = APIClient(headers={"x-chatbot_auth_token": f"Bearer {bot.plain_secret}"})
    body = customer_message(channel, message_id=message_id, text=text)
    assert client.post("/api/webhook/new_message", body, format="json").status_code == 200


def _inbox(operator: Client) -> dict[str, Any]:
    selectors_inbox.inbox_forget()
    response = operator.get("/admin/inbox/data")
    assert response.status_code == 200
    return response.json()


def test_what_needs_a_human_enters_the_inbox_with_why(
    operator: Client, receiver: ChannelReceiver, drain: Drain, settings: Any
) -> None:
    assert _inbox(operator)["rows"] == []
    asked_bot = ChatBotFactory(handoff_keywords="human")
    asked = ChannelFactory(chat_bot=asked_bot, url=receiver.url)
    _post(asked_bot, asked, "a-1", "A human, please")
    quiet_bot = ChatBotFactory()
    taken = ChannelFactory(chat_bot=quiet_bot, url=receiver.url)
    _post(quiet_bot, taken, "t-1", "Hello")
    drain()
    dialogue_pause(dialogue=Dialogue.objects.get(channel_id=taken.pk), minutes=None)
    settings.LLM_BACKEND = "worker.tests.test_burst.failing_llm"
    failing = ChannelFactory(chat_bot=quiet_bot, url=receiver.url)
    _post(quiet_bot, failing, "f-1", "Hi?")
    drain()

    data = _inbox(operator)
    reasons = {row["chat_id"]: row["reasons"] for row in data["rows"]}
    assert reasons == {str(asked.pk): ["asked"], str(taken.pk): ["taken_over"], str(failing.pk): ["no_reply"]}
    row = next(row for row in data["rows"] if row["chat_id"] == str(asked.pk))
    assert "human" in row["handoff_reason"] and row["paused"] is True and row["gives_back_at"] is None
    assert row["preview"] and row["preview_role"] == "ASSISTANT"  # the hand-off text, the last message
    assert data["counts"] == {"mine": 0, "unassigned": 3, "all": 3}


def test_a_dead_reply_enters_the_inbox(operator: Client, drain: Drain, settings: Any) -> None:
    settings.DELIVERY_MAX_ATTEMPTS = 1
    bot = ChatBotFactory()
    channel = ChannelFactory(chat_bot=bot, url="http://127.0.0.1:9/refused")
    _post(bot, channel, "d-1", "Hello")
    drain()
    assert Message.objects.get(role=Message.Role.ASSISTANT).delivery_state == "dead"
    [row] = _inbox(operator)["rows"]
    assert row["reasons"] == ["dead_reply"] and row["preview"].startswith("Echo")  # the dead reply, the last


def test_assign_unread_note_and_resolve(
    operator: Client, staff_user: Any, receiver: ChannelReceiver, drain: Drain
) -> None:
    bot = ChatBotFactory(handoff_keywords="human")
    channel = ChannelFactory(chat_bot=bot, url=receiver.url)
    _post(bot, channel, "m-1", "human!")
    drain()
    dialogue = Dialogue.objects.get(channel_id=channel.pk)

    assert operator.post(f"/admin/inbox/{dialogue.pk}/assign/", {"user": "me"}).status_code == 302
    [row] = _inbox(operator)["rows"]
    assert row["assignee_name"] == staff_user.username and row["unread"] == 0
    assert _inbox(operator)["counts"] == {"mine": 1, "unassigned": 0, "all": 1}
    # The customer writes while the bot is paused: unread for the assignee, until they open it.
    _post(bot, channel, "m-2", "hello?")
    _post(bot, channel, "m-3", "anyone?")
    assert _inbox(operator)["rows"][0]["unread"] == 2
    assert operator.get(f"/admin/dialogues/dialogue/{dialogue.pk}/change/").status_code == 200
    assert _inbox(operator)["rows"][0]["unread"] == 0

    # A private note: in the transcript, never sent, never the LLM's.
    receiver.reset()
    assert operator.post(f"/admin/inbox/{dialogue.pk}/note/", {"text": "VIP, refund approved"}).status_code == 302
    note = Message.objects.get(dialogue_id=dialogue.pk, role=Message.Role.NOTE)
    assert note.text == "VIP, refund approved" and note.author_username == staff_user.username
    drain()
    assert receiver.requests == []
    assert operator.post(f"/admin/inbox/{dialogue.pk}/note/", {"text": "  "}).status_code == 302
    assert Message.objects.filter(role=Message.Role.NOTE).count() == 1

    # Resolve: out of the inbox, and the bot answers again.
    assert operator.post(f"/admin/inbox/{dialogue.pk}/resolve/").status_code == 302
    assert _inbox(operator)["rows"] == []
    stored = Dialogue.objects.get(pk=dialogue.pk)
    assert not stored.is_paused and not stored.handoff_reason
    _post(bot, channel, "m-4", "thanks")
    drain()
    assert [request.json["in_reply_to"] for request in receiver.requests] == ["m-4"]


def test_the_list_is_read_once_per_refresh_whatever_the_number_of_tabs(operator: Client) -> None:
    selectors_inbox.inbox_forget()
    before = selectors_inbox.reads
    for _ in range(50):
        assert operator.get("/admin/inbox/data").status_code == 200
    assert selectors_inbox.reads - before == 1


def test_the_inbox_needs_permission_and_refuses_gets_on_actions(operator: Client) -> None:
    assert Client().get("/admin/inbox/data").status_code == 302  # to the login
    assert operator.get("/admin/inbox/").status_code == 200
    assert operator.get("/admin/inbox/0123456789abcdef01234567/resolve/").status_code == 405
    assert operator.post("/admin/inbox/0123456789abcdef01234567/resolve/").status_code == 404
