"""Hand-off between the bot and operators: pausing the bot in a dialogue (API, admin, an
employee writing from the channel, an operator's reply), and operators' messages delivered by
the real worker to a real receiver, in order with the bot's replies."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from channels_app.models import Channel
from chatbots.models import ChatBot
from chatbots.tests.factories import ChatBotFactory
from devtools.receiver import ChannelReceiver, Reply
from dialogues import selectors, selectors_lists
from dialogues.models import PAUSED_INDEFINITELY, Dialogue, Message
from dialogues.store.collections import dialogues_collection
from dialogues.tests.conftest import customer_message

pytestmark = pytest.mark.django_db

Drain = Callable[[], None]


def api(dialogue: Dialogue | str, action: str = "") -> str:
    pk = dialogue.pk if isinstance(dialogue, Dialogue) else dialogue
    return f"/api/dialogues/{pk}/{action}" if action else f"/api/dialogues/{pk}"


def start_dialogue(channel: Channel, post_webhook: Any, drain: Drain, *, message_id: str = "m-0") -> Dialogue:
    """A dialogue with one customer message, answered and delivered."""
    assert post_webhook(customer_message(channel, message_id=message_id, text="Hi")).status_code == 200
    drain()
    return Dialogue.objects.get(channel=channel)


def expire_pause(dialogue: Dialogue) -> None:
    """Time passes: the pause in force ran out a second ago."""
    dialogues_collection().update_one(
        {"_id": dialogue.pk}, {"$set": {"paused_until": timezone.now() - timedelta(seconds=1)}}
    )


# --- API: pause and resume -------------------------------------------------------------------


def test_pause_and_resume_through_the_api(api_client: APIClient, channel, post_webhook, drain: Drain) -> None:
    dialogue = start_dialogue(channel, post_webhook, drain)
    body = api_client.get(api(dialogue)).json()
    assert body["paused"] is False and body["paused_until"] is None

    before = timezone.now()
    response = api_client.post(api(dialogue, "pause"), {"minutes": 15}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["paused"] is True
    ends = Dialogue.objects.get(pk=dialogue.pk).paused_until
    assert ends is not None and before + timedelta(minutes=15) <= ends <= timezone.now() + timedelta(minutes=15)
    assert response.json()["paused_until"] is not None
    assert api_client.get(api(dialogue)).json()["paused"] is True

    # Without minutes: until resumed (a far-future date stored, shown as paused_until null).
    response = api_client.post(api(dialogue, "pause"))
    assert response.status_code == 200
    assert response.json()["paused"] is True and response.json()["paused_until"] is None
    assert Dialogue.objects.get(pk=dialogue.pk).paused_until == PAUSED_INDEFINITELY

    response = api_client.post(api(dialogue, "resume"))
    assert response.status_code == 200
    assert response.json()["paused"] is False and response.json()["paused_until"] is None
    assert Dialogue.objects.get(pk=dialogue.pk).paused_until is None


@pytest.mark.parametrize(
    "body", [{"minutes": 0}, {"minutes": -5}, {"minutes": "10"}, {"minutes": 1.5}, {"minutes": True}, [1]]
)
def test_pause_with_bad_minutes_is_400(api_client: APIClient, channel, post_webhook, drain: Drain, body) -> None:
    dialogue = start_dialogue(channel, post_webhook, drain)
    response = api_client.post(api(dialogue, "pause"), body, format="json")
    assert response.status_code == 400
    assert response["content-type"].startswith("application/json")
    assert Dialogue.objects.get(pk=dialogue.pk).paused_until is None


@pytest.mark.parametrize("action", ["pause", "resume", "messages"])
@pytest.mark.parametrize("pk", ["665f1c2e9b1e8a3d4c5b6a79", "not-an-id"])
def test_unknown_dialogue_is_404(api_client: APIClient, action: str, pk: str) -> None:
    body = {"text": "hello"} if action == "messages" else {}
    response = api_client.post(api(pk, action), body, format="json")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


@pytest.mark.parametrize("action", ["pause", "resume", "messages"])
def test_handoff_needs_a_staff_user(anon_client: APIClient, channel, post_webhook, drain: Drain, action) -> None:
    dialogue = start_dialogue(channel, post_webhook, drain)
    response = anon_client.post(api(dialogue, action), {"text": "hello"}, format="json")
    assert response.status_code == 401
    assert Dialogue.objects.get(pk=dialogue.pk).paused_until is None
    assert not Message.objects.filter(role=Message.Role.EMPLOYEE).exists()


def test_list_filters_on_the_pause(api_client: APIClient, bot: ChatBot, receiver: ChannelReceiver) -> None:
    from channels_app.tests.factories import ChannelFactory
    from dialogues.tests.factories import DialogueFactory

    now = timezone.now()
    active = DialogueFactory(channel=ChannelFactory(chat_bot=bot, url=receiver.url))
    expired = DialogueFactory(channel=ChannelFactory(chat_bot=bot, url=receiver.url))
    paused = DialogueFactory(channel=ChannelFactory(chat_bot=bot, url=receiver.url))
    taken = DialogueFactory(channel=ChannelFactory(chat_bot=bot, url=receiver.url))
    Dialogue.objects.filter(pk=expired.pk).update(paused_until=now - timedelta(minutes=1))
    Dialogue.objects.filter(pk=paused.pk).update(paused_until=now + timedelta(minutes=10))
    Dialogue.objects.filter(pk=taken.pk).update(paused_until=PAUSED_INDEFINITELY)

    def ids(query: str) -> set[str]:
        response = api_client.get(f"/api/dialogues/?{query}")
        assert response.status_code == 200, response.content
        return {row["id"] for row in response.json()["results"]}

    assert ids("paused=true") == {str(paused.pk), str(taken.pk)}
    assert ids("paused=false") == {str(active.pk), str(expired.pk)}
    assert ids(f"paused=false&chat_bot_id={bot.pk}") == {str(active.pk), str(expired.pk)}
    assert len(ids("")) == 4
    assert api_client.get("/api/dialogues/?paused=maybe").status_code == 400


def test_the_paused_list_pages_through_its_own_index_in_the_list_order(
    api_client: APIClient, bot: ChatBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`paused=true` reads the paused dialogues on their index, page by page through the
    cursor, most recently active first, whatever number of active dialogues lie between them."""
    from channels_app.tests.factories import ChannelFactory
    from dialogues.tests.factories import DialogueFactory

    now = timezone.now()
    mine, other = ChannelFactory(chat_bot=bot), ChannelFactory()
    expected: dict[object, list[str]] = {mine.pk: [], other.pk: []}
    for i in range(14):
        channel = mine if i % 2 else other
        dialogue = DialogueFactory(channel=channel, chat_id=f"p-{i}")
        until = [PAUSED_INDEFINITELY, now + timedelta(minutes=10), None, now - timedelta(minutes=1)][i % 4]
        Dialogue.objects.filter(pk=dialogue.pk).update(paused_until=until, last_message_at=now - timedelta(hours=i))
        if until is not None and until > now:
            expected[channel.pk].append(str(dialogue.pk))

    def pages(query: str) -> list[str]:
        seen: list[str] = []
        url: str | None = f"/api/dialogues/?paused=true&limit=2{query}"
        while url:
            response = api_client.get(url)
            assert response.status_code == 200, response.content
            seen += [row["id"] for row in response.json()["results"]]
            assert all(row["paused"] for row in response.json()["results"])
            url = response.json()["next"]
        return seen

    assert pages(f"&chat_bot_id={bot.pk}") == expected[mine.pk]
    assert pages(f"&channel_id={other.pk}") == expected[other.pk]
    assert sorted(pages("")) == sorted(expected[mine.pk] + expected[other.pk])

    # Many active dialogues, more recent than every paused one: not read.
    busy = ChannelFactory(chat_bot=bot)
    for i in range(60):
        DialogueFactory(channel=busy, chat_id=f"active-{i}")
    selected = []
    for module in (selectors, selectors_lists):
        real = module.mongo_collection

        def counting(name: str, real: Any = real) -> Any:
            collection = real(name)

            class Counting:
                def find(self, query: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
                    selected.append(collection.count_documents(query))
                    return collection.find(query, *args, **kwargs)

            return Counting()

        monkeypatch.setattr(module, "mongo_collection", counting)
    response = api_client.get("/api/dialogues/?paused=true&limit=10")
    assert len(response.json()["results"]) == len(expected[mine.pk] + expected[other.pk]) == 8
    assert sum(selected) <= 20, selected


# --- The webhook and the worker while the bot is paused -------------------------------------


def test_paused_dialogue_stores_customer_messages_without_replying_until_the_pause_ends(
    api_client: APIClient, channel, post_webhook, receiver: ChannelReceiver, drain: Drain
) -> None:
    dialogue = start_dialogue(channel, post_webhook, drain)
    receiver.reset()
    assert api_client.post(api(dialogue, "pause"), {"minutes": 5}, format="json").status_code == 200

    response = post_webhook(customer_message(channel, message_id="m-1", text="Are you a bot?"))
    assert response.status_code == 200
    body = response.json()
    assert body["ignored"] is True and body["ignored_reason"] == "paused"
    assert body["reply_pending"] is False and body["replied"] is False and body["delivery"] is None
    drain()
    assert receiver.requests == []
    stored = Message.objects.get(message_id="m-1")
    assert stored.role == Message.Role.USER and stored.text == "Are you a bot?"
    assert stored.reply_state == Message.ReplyState.PAUSED
    assert not Message.objects.filter(in_reply_to="m-1").exists()
    # A repeat of it says the same, and stores nothing.
    again = post_webhook(customer_message(channel, message_id="m-1", text="Are you a bot?")).json()
    assert again["duplicate"] is True and again["ignored"] is True and again["ignored_reason"] == "paused"

    # The pause runs out by itself: the next message is answered, the earlier one stays not.
    expire_pause(dialogue)
    assert api_client.get(api(dialogue)).json()["paused"] is False
    response = post_webhook(customer_message(channel, message_id="m-2", text="Hello?"))
    assert response.json()["reply_pending"] is True and "ignored_reason" not in response.json()
    drain()
    [delivered] = receiver.requests
    assert delivered.json["in_reply_to"] == "m-2" and delivered.json["role"] == "ASSISTANT"
    assert Message.objects.get(message_id="m-1").reply_state == Message.ReplyState.PAUSED
    assert Message.objects.get(message_id="m-2").reply_state == Message.ReplyState.REPLIED
    # Every stored message and reserved position is counted once.
    assert Dialogue.objects.get(pk=dialogue.pk).message_count == Message.objects.filter(dialogue=dialogue).count()


def test_resume_makes_the_bot_answer_the_next_message(
    api_client: APIClient, channel, post_webhook, receiver: ChannelReceiver, drain: Drain
) -> None:
    dialogue = start_dialogue(channel, post_webhook, drain)
    api_client.post(api(dialogue, "pause"))
    post_webhook(customer_message(channel, message_id="m-1"))
    drain()
    api_client.post(api(dialogue, "resume"))
    receiver.reset()

    assert post_webhook(customer_message(channel, message_id="m-2")).json()["reply_pending"] is True
    drain()
    assert [r.json["in_reply_to"] for r in receiver.requests] == ["m-2"]


def test_employee_message_from_the_channel_pauses_the_bot_when_configured(
    receiver: ChannelReceiver, post_webhook, drain: Drain
) -> None:
    from channels_app.tests.factories import ChannelFactory

    bot = ChatBotFactory(pause_after_employee_minutes=20)
    channel = ChannelFactory(chat_bot=bot, url=receiver.url)

    def post(body: dict[str, Any]) -> Any:
        return post_webhook(body, secret=bot.plain_secret)

    before = timezone.now()
    response = post(customer_message(channel, message_id="e-1", message_sender="employee", text="Ann here"))
    assert response.json()["ignored"] is True and response.json()["ignored_reason"] == "employee"
    assert response.json()["answered"] is False
    dialogue = Dialogue.objects.get(channel=channel)
    assert dialogue.is_paused
    assert before + timedelta(minutes=20) <= dialogue.paused_until <= timezone.now() + timedelta(minutes=20)

    assert post(customer_message(channel, message_id="m-1")).json()["ignored_reason"] == "paused"
    drain()
    assert receiver.requests == []
    assert Message.objects.get(message_id="m-1").reply_state == Message.ReplyState.PAUSED


def test_employee_message_does_not_pause_by_default(
    bot: ChatBot, channel, post_webhook, receiver: ChannelReceiver, drain: Drain
) -> None:
    assert bot.pause_after_employee_minutes == 0 and bot.pause_after_operator_reply_minutes == 30
    post_webhook(customer_message(channel, message_id="e-1", message_sender="employee"))
    assert not Dialogue.objects.get(channel=channel).is_paused
    assert post_webhook(customer_message(channel, message_id="m-1")).json()["reply_pending"] is True
    drain()
    assert [r.json["in_reply_to"] for r in receiver.requests] == ["m-1"]


def test_employee_message_never_shortens_a_longer_pause(receiver: ChannelReceiver, post_webhook) -> None:
    from channels_app.tests.factories import ChannelFactory

    bot = ChatBotFactory(pause_after_employee_minutes=5)
    channel = ChannelFactory(chat_bot=bot, url=receiver.url)
    post_webhook(customer_message(channel, message_id="m-1"), secret=bot.plain_secret)
    dialogue = Dialogue.objects.get(channel=channel)
    Dialogue.objects.filter(pk=dialogue.pk).update(paused_until=PAUSED_INDEFINITELY)
    post_webhook(customer_message(channel, message_id="e-1", message_sender="employee"), secret=bot.plain_secret)
    assert Dialogue.objects.get(pk=dialogue.pk).paused_until == PAUSED_INDEFINITELY


# --- Operators' messages ---------------------------------------------------------------------


def test_operator_message_reaches_the_channel_once_in_order_with_the_bots_replies(
    api_client: APIClient, staff_user, channel, post_webhook, receiver: ChannelReceiver, drain: Drain
) -> None:
    dialogue = start_dialogue(channel, post_webhook, drain)
    receiver.reset()
    # A customer message whose reply is not generated yet, then the operator writes: the bot's
    # reply to the earlier message goes first, the operator's message after it.
    assert post_webhook(customer_message(channel, message_id="m-1", text="Where is it?")).json()["reply_pending"]
    response = api_client.post(api(dialogue, "messages"), {"text": "Hi, Ann from support here."}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["role"] == "EMPLOYEE" and body["text"] == "Hi, Ann from support here."
    assert body["author_username"] == staff_user.username and body["delivery_state"] == "pending"

    drain()
    assert [(r.json["role"], r.json.get("in_reply_to")) for r in receiver.requests] == [
        ("ASSISTANT", "m-1"),
        ("EMPLOYEE", None),
    ]
    sent = receiver.requests[1]
    assert sent.json["message_id"] == body["message_id"] and sent.json["text"] == "Hi, Ann from support here."
    assert sent.json["chat_id"] == str(channel.pk)
    assert sent.headers["webhook-id"] == body["message_id"]
    stored = Message.objects.get(message_id=body["message_id"])
    assert stored.delivery_state == "delivered" and stored.delivery_attempts == 1
    assert stored.author_id == staff_user.pk and stored.author_username == staff_user.username
    assert stored.seq is not None and stored.seq > Message.objects.get(message_id="m-1").seq

    # Sending paused the bot for the bot's pause_after_operator_reply_minutes (30).
    dialogue.refresh_from_db()
    assert dialogue.is_paused
    assert dialogue.paused_until <= timezone.now() + timedelta(minutes=30)
    assert dialogue.paused_until >= timezone.now() + timedelta(minutes=29)
    receiver.reset()
    assert post_webhook(customer_message(channel, message_id="m-2")).json()["ignored_reason"] == "paused"
    drain()
    assert receiver.requests == []  # nothing twice, and no reply while paused

    # The history has every message once (ordered by when each was stored: the operator's
    # message was stored before the bot generated its reply to m-1).
    history = api_client.get(api(dialogue, "messages")).json()["message_list"]
    assert sorted(m["role"] for m in history) == ["ASSISTANT", "ASSISTANT", "EMPLOYEE", "USER", "USER", "USER"]


def test_operator_message_is_retried_until_the_channel_takes_it(
    api_client: APIClient, channel, post_webhook, receiver: ChannelReceiver, drain: Drain
) -> None:
    dialogue = start_dialogue(channel, post_webhook, drain)
    receiver.reset()
    receiver.then(Reply(status=503))
    body = api_client.post(api(dialogue, "messages"), {"text": "Still there?"}, format="json").json()
    with override_settings(DELIVERY_RETRY_BASE_S=0.01, DELIVERY_RETRY_MAX_S=0.01):
        for _ in range(20):
            drain()
            if Message.objects.get(message_id=body["message_id"]).delivery_state == "delivered":
                break
            time.sleep(0.02)  # the retry's backoff
    stored = Message.objects.get(message_id=body["message_id"])
    assert stored.delivery_state == "delivered" and stored.delivery_attempts == 2
    assert [r.json["message_id"] for r in receiver.requests] == [body["message_id"]] * 2


@pytest.mark.parametrize("body", [{}, {"text": ""}, {"text": "   "}, {"text": 5}, {"text": "x" * (32 * 1024 + 1)}])
def test_operator_message_with_bad_text_is_400(
    api_client: APIClient, channel, post_webhook, drain: Drain, body
) -> None:
    dialogue = start_dialogue(channel, post_webhook, drain)
    response = api_client.post(api(dialogue, "messages"), body, format="json")
    assert response.status_code == 400
    assert "text" in response.json()
    assert not Message.objects.filter(role=Message.Role.EMPLOYEE).exists()
    assert not Dialogue.objects.get(pk=dialogue.pk).is_paused


def test_operator_reply_keeps_a_longer_pause(api_client: APIClient, channel, post_webhook, drain: Drain) -> None:
    dialogue = start_dialogue(channel, post_webhook, drain)
    api_client.post(api(dialogue, "pause"))
    assert api_client.post(api(dialogue, "messages"), {"text": "I'm on it"}, format="json").status_code == 201
    assert Dialogue.objects.get(pk=dialogue.pk).paused_until == PAUSED_INDEFINITELY


def test_operator_reply_pauses_nothing_when_the_bot_says_zero(
    api_client: APIClient, bot: ChatBot, channel, post_webhook, drain: Drain
) -> None:
    ChatBot.objects.filter(pk=bot.pk).update(pause_after_operator_reply_minutes=0)
    dialogue = start_dialogue(channel, post_webhook, drain)
    assert api_client.post(api(dialogue, "messages"), {"text": "FYI"}, format="json").status_code == 201
    assert not Dialogue.objects.get(pk=dialogue.pk).is_paused


def test_the_schema_documents_the_handoff_endpoints(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from io import StringIO

    import yaml
    from django.core.management import call_command

    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target), stderr=StringIO())
    paths = yaml.safe_load(target.read_text())["paths"]
    assert {"200", "400", "404"} <= set(paths["/api/dialogues/{id}/pause/"]["post"]["responses"])
    assert {"200", "404"} <= set(paths["/api/dialogues/{id}/resume/"]["post"]["responses"])
    assert {"201", "400", "404"} <= set(paths["/api/dialogues/{id}/messages/"]["post"]["responses"])
    assert "get" in paths["/api/dialogues/{id}/messages/"]
    assert "paused" in {p["name"] for p in paths["/api/dialogues/"]["get"]["parameters"]}


# --- Admin -------------------------------------------------------------------------------------


@pytest.fixture
def admin_client(client: Client, staff_user) -> Client:  # type: ignore[no-untyped-def]
    client.force_login(staff_user)
    return client


def admin_url(name: str, dialogue: Dialogue) -> str:
    return reverse(f"admin:dialogues_dialogue_{name}", args=[dialogue.pk])


def test_admin_take_over_and_give_back(admin_client: Client, channel, post_webhook, drain: Drain) -> None:
    dialogue = start_dialogue(channel, post_webhook, drain)
    page = admin_client.get(admin_url("change", dialogue))
    assert page.status_code == 200
    content = page.content.decode()
    assert "Take over" in content and "Give back to the bot" not in content
    assert 'class="transcript"' in content and "The bot answers this customer." in content

    response = admin_client.post(admin_url("take_over", dialogue))
    assert response.status_code == 302 and response["location"].startswith(admin_url("change", dialogue))
    assert Dialogue.objects.get(pk=dialogue.pk).paused_until == PAUSED_INDEFINITELY
    content = admin_client.get(admin_url("change", dialogue)).content.decode()
    assert "Give back to the bot" in content and "You have taken this dialogue over" in content

    assert admin_client.post(admin_url("give_back", dialogue)).status_code == 302
    assert not Dialogue.objects.get(pk=dialogue.pk).is_paused
    # GET changes nothing.
    assert admin_client.get(admin_url("take_over", dialogue)).status_code == 405
    assert not Dialogue.objects.get(pk=dialogue.pk).is_paused


def test_admin_reply_sends_as_the_staff_user(
    admin_client: Client, staff_user, channel, post_webhook, receiver: ChannelReceiver, drain: Drain
) -> None:
    dialogue = start_dialogue(channel, post_webhook, drain)
    receiver.reset()
    # The page's script posts with this header and gets the transcript fragment back.
    response = admin_client.post(
        admin_url("reply", dialogue), {"text": "Ann here, from the admin"}, headers={"X-Requested-With": "fetch"}
    )
    assert response.status_code == 200
    assert "Ann here, from the admin" in response.content.decode()
    assert f"Operator {staff_user.username}" in response.content.decode()
    message = Message.objects.get(role=Message.Role.EMPLOYEE)
    assert message.author_username == staff_user.username and message.author_id == staff_user.pk
    assert Dialogue.objects.get(pk=dialogue.pk).is_paused
    drain()
    [sent] = receiver.requests
    assert sent.json["role"] == "EMPLOYEE" and sent.json["text"] == "Ann here, from the admin"

    # Without the script: a redirect back to the page; a blank text is refused there.
    response = admin_client.post(admin_url("reply", dialogue), {"text": "  "})
    assert response.status_code == 302
    assert Message.objects.filter(role=Message.Role.EMPLOYEE).count() == 1
    assert (
        admin_client.post(
            admin_url("reply", dialogue), {"text": " "}, headers={"X-Requested-With": "fetch"}
        ).status_code
        == 400
    )

    # The polled fragment shows the delivered state of the operator's message.
    fragment = admin_client.get(admin_url("transcript", dialogue)).content.decode()
    assert "Ann here, from the admin" in fragment and "state-delivered" in fragment


def test_admin_handoff_needs_permission(client: Client, django_user_model, channel, post_webhook, drain) -> None:
    dialogue = start_dialogue(channel, post_webhook, drain)
    viewer = django_user_model.objects.create_user(username="viewer", password="x-pass-123456", is_staff=True)
    client.force_login(viewer)
    assert client.post(admin_url("take_over", dialogue)).status_code == 403
    assert client.post(admin_url("reply", dialogue), {"text": "hi"}).status_code == 403
    assert client.get(admin_url("transcript", dialogue)).status_code == 403
    assert not Dialogue.objects.get(pk=dialogue.pk).is_paused
    assert not Message.objects.filter(role=Message.Role.EMPLOYEE).exists()
    client.logout()
    assert client.post(admin_url("take_over", dialogue)).status_code == 302  # to the login page
    assert not Dialogue.objects.get(pk=dialogue.pk).is_paused


def test_admin_list_filter_and_column(admin_client: Client, channel, post_webhook, drain: Drain) -> None:
    dialogue = start_dialogue(channel, post_webhook, drain)
    changelist = reverse("admin:dialogues_dialogue_changelist")
    assert "answering" in admin_client.get(changelist).content.decode()
    assert str(dialogue.chat_id) not in admin_client.get(changelist + "?paused=yes").content.decode()
    admin_client.post(admin_url("take_over", dialogue))
    paused = admin_client.get(changelist + "?paused=yes").content.decode()
    assert str(dialogue.chat_id) in paused and "paused until given back" in paused
    assert str(dialogue.chat_id) not in admin_client.get(changelist + "?paused=no").content.decode()


# --- Races and the Deliveries screen -------------------------------------------------------


def test_messages_racing_a_pause_are_either_answered_or_paused_never_both(
    bot: ChatBot, channel, receiver: ChannelReceiver, drain: Drain
) -> None:
    import threading

    from dialogues.ingest import webhook_message_process
    from dialogues.services_operators import dialogue_pause

    webhook_message_process(chat_bot=bot, chat_id=str(channel.pk), text="first", message_sender="customer")
    dialogue = Dialogue.objects.get(channel=channel)
    barrier = threading.Barrier(9)
    outcomes: dict[str, bool] = {}
    errors: list[BaseException] = []

    def customer(n: int) -> None:
        from django.db import connection

        try:
            barrier.wait()
            for i in range(6):
                result = webhook_message_process(
                    chat_bot=bot, chat_id=str(channel.pk), text=f"t{n}-{i}", message_sender="customer",
                    message_id=f"c{n}-{i}",
                )  # fmt: skip
                outcomes[result.message_id] = result.ignored
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)
        finally:
            connection.close()

    def operator() -> None:
        from django.db import connection

        try:
            barrier.wait()
            time.sleep(0.01)
            dialogue_pause(dialogue=dialogue, minutes=10)
        finally:
            connection.close()

    threads = [threading.Thread(target=customer, args=(n,)) for n in range(8)] + [threading.Thread(target=operator)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    drain()

    assert errors == [] and len(outcomes) == 48
    users = {m.message_id: m for m in Message.objects.filter(role=Message.Role.USER).exclude(text="first")}
    replied_to = [r.json["in_reply_to"] for r in receiver.requests]
    for message_id in outcomes:
        # Paused when it came in: stored, never answered. Reserved before the take-over: the
        # take-over cancelled its reply (none was delivered yet: the worker ran after it).
        assert users[message_id].reply_state == Message.ReplyState.PAUSED
        assert replied_to.count(message_id) == 0
    assert not Message.objects.filter(role=Message.Role.ASSISTANT).exclude(delivery_state="cancelled").exists()
    # Each customer's own messages: once one found the bot paused, none after it was answered.
    for n in range(8):
        states = [outcomes[f"c{n}-{i}"] for i in range(6)]
        assert states == sorted(states)
    stored = Message.objects.filter(dialogue=dialogue).count()
    assert Dialogue.objects.get(pk=dialogue.pk).message_count == stored


def test_an_operator_message_that_dies_shows_under_deliveries(
    api_client: APIClient, admin_client: Client, channel, post_webhook, receiver: ChannelReceiver, drain: Drain
) -> None:
    from dialogues.models import Delivery

    dialogue = start_dialogue(channel, post_webhook, drain)
    body = api_client.post(api(dialogue, "messages"), {"text": "Are you there?"}, format="json").json()
    Message.objects.filter(message_id=body["message_id"]).update(delivery_state="dead")
    assert list(Delivery.objects.values_list("message_id", flat=True)) == [body["message_id"]]
    page = admin_client.get(reverse("admin:dialogues_delivery_changelist")).content.decode()
    assert "Are you there?" in page
