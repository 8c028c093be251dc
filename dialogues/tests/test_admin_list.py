"""The dialogue list operators look for conversations in (columns, filters, text search that
stays bounded), and the Deliveries screen's per-reply "Redeliver now"."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId
from django.db import connection, connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from channels_app.models import DeliveryState
from channels_app.tests.factories import ChannelFactory
from chatbots.tests.factories import ChatBotFactory
from core.db_routing import OPERATORS_DB
from dialogues import admin as dialogues_admin
from dialogues.models import Dialogue, Message
from dialogues.tests.conftest import PostWebhook, customer_message
from dialogues.tests.factories import DialogueFactory, MessageFactory

pytestmark = pytest.mark.django_db

DIALOGUES = "admin:dialogues_dialogue_changelist"
DELIVERIES = "admin:dialogues_delivery_changelist"


@pytest.fixture
def admin_client(client: Client, staff_user: Any) -> Client:
    client.force_login(staff_user)
    return client


def say(dialogue: Dialogue, text: str, *, role: str = Message.Role.USER, **fields: Any) -> Message:
    """A message at the dialogue's next position, as the webhook stores it (seq, counters)."""
    seq = dialogue.last_seq + 1
    message = MessageFactory(dialogue=dialogue, role=role, text=text, seq=seq, **fields)
    Dialogue.objects.filter(pk=dialogue.pk).update(
        last_seq=seq, message_count=dialogue.message_count + 1, last_message_at=message.created_at
    )
    dialogue.refresh_from_db()
    return message


def listed(client: Client, query: dict[str, str] | None = None) -> set[object]:
    response = client.get(reverse(DIALOGUES), query or {})
    assert response.status_code == 200
    return {d.pk for d in response.context["cl"].result_list}


def test_dialogue_list_shows_names_last_message_preview_count_and_problems(admin_client: Client) -> None:
    bot = ChatBotFactory(name="Shop assistant")
    dialogue = DialogueFactory(channel=ChannelFactory(chat_bot=bot, name="Web widget"), chat_id="customer-7")
    say(dialogue, "Where is my order?")
    say(dialogue, "It ships today.", role=Message.Role.ASSISTANT, delivery_state=DeliveryState.FAILED)
    say(dialogue, "<b>thanks</b> " + "a" * 200, role=Message.Role.USER)
    say(dialogue, "x", role=Message.Role.ASSISTANT, delivery_state=DeliveryState.DEAD, in_reply_to="z")
    say(dialogue, "Hi again!", role=Message.Role.EMPLOYEE, delivery_state=DeliveryState.DELIVERED)

    page = admin_client.get(reverse(DIALOGUES)).content.decode()
    row = page[page.index("<tbody>") : page.index("</tbody>")]
    assert "customer-7" in row
    assert "Shop assistant" in row and "Web widget" in row
    assert str(dialogue.chat_bot_id) not in row  # names, not hex ids
    assert "Hi again!" in row  # the last message
    assert "employee:" in row
    assert '<td class="field-message_count">5</td>' in row
    assert "2 failed replies" in row
    assert f"?dialogue__id__exact={dialogue.pk}" in row
    assert "UTC" in row  # the time says its zone
    # The column headers use the operators' words.
    for header in ("Customer chat id", "Bot", "Channel", "Last message", "Messages", "Delivery problems"):
        assert f">{header}<" in page


def test_dialogue_list_preview_is_cut_escaped_and_whole_in_the_tooltip(admin_client: Client) -> None:
    dialogue = DialogueFactory()
    say(dialogue, "<b>thanks</b> " + "a" * 200)
    page = admin_client.get(reverse(DIALOGUES)).content.decode()
    assert "<b>thanks</b>" not in page
    assert "&lt;b&gt;thanks&lt;/b&gt; " + "a" * 200 in page  # the title attribute
    assert "a" * 100 + "…" not in page and "…" in page


def test_dialogue_list_previews_the_last_message_stored_by_the_webhook(
    admin_client: Client, post_webhook: PostWebhook, channel: Any
) -> None:
    assert post_webhook(customer_message(channel, message_id="a", text="first words")).status_code == 200
    assert post_webhook(customer_message(channel, message_id="b", text="the latest words")).status_code == 200
    page = admin_client.get(reverse(DIALOGUES)).content.decode()
    assert "the latest words" in page
    assert "first words" not in page


def test_dialogue_list_reads_one_bounded_preview_per_row_and_one_problem_count(
    admin_client: Client, django_assert_max_num_queries: Any
) -> None:
    first = DialogueFactory()
    say(first, "hello")
    with django_assert_max_num_queries(16, connection=connections[OPERATORS_DB]) as few:
        admin_client.get(reverse(DIALOGUES))
    channel = ChannelFactory()
    for i in range(30):
        dialogue = DialogueFactory(channel=channel, chat_id=f"chat-{i}")
        say(dialogue, f"text {i}")
        say(dialogue, "reply", role=Message.Role.ASSISTANT, delivery_state=DeliveryState.FAILED)
    # One preview read per new row; the problem counts stay one query for the page.
    with django_assert_max_num_queries(len(few.captured_queries) + 30, connection=connections[OPERATORS_DB]):
        response = admin_client.get(reverse(DIALOGUES))
    assert len(response.context["cl"].result_list) == 31
    assert response.content.decode().count("1 failed reply<") == 30


def test_dialogue_list_previews_the_latest_message_of_a_long_dialogue(admin_client: Client) -> None:
    long = DialogueFactory()
    collection = connection.get_collection(Message._meta.db_table)  # type: ignore[attr-defined]
    base = timezone.now() - timedelta(hours=1)
    collection.insert_many(
        [
            {
                "dialogue_id": long.pk,
                "chat_bot_id": long.chat_bot_id,
                "channel_id": long.channel_id,
                "message_id": f"m-{i}",
                "role": "USER",
                "text": f"old message {i}",
                "created_at": base + timedelta(milliseconds=i),
                "seq": i + 1,
            }  # fmt: skip
            for i in range(2_000)
        ]
    )
    Dialogue.objects.filter(pk=long.pk).update(last_seq=2_000, message_count=2_000, last_message_at=timezone.now())
    response = admin_client.get(reverse(DIALOGUES))
    assert response.status_code == 200
    # Its cost at scale is the data-at-scale benchmark's to measure (README, "Benchmark").
    assert "old message 1999" in response.content.decode()
    assert "old message 1998" not in response.content.decode()


def test_dialogue_list_filters_by_bot_channel_date_and_failed_replies(admin_client: Client) -> None:
    failing, quiet, old = DialogueFactory(), DialogueFactory(), DialogueFactory()
    say(failing, "hi")
    say(failing, "reply", role=Message.Role.ASSISTANT, delivery_state=DeliveryState.DEAD)
    say(quiet, "hi")
    say(quiet, "reply", role=Message.Role.ASSISTANT, delivery_state=DeliveryState.DELIVERED)
    Dialogue.objects.filter(pk=old.pk).update(last_message_at=timezone.now() - timedelta(days=60))

    assert listed(admin_client, {"problems": "yes"}) == {failing.pk}
    assert listed(admin_client, {"chat_bot__id__exact": str(quiet.chat_bot_id)}) == {quiet.pk}
    assert listed(admin_client, {"channel__id__exact": str(failing.channel_id)}) == {failing.pk}
    # What the date filter's "Past 7 days" link sends (aware datetimes).
    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    week = {
        "last_message_at__gte": str(today - timedelta(days=7)),
        "last_message_at__lt": str(today + timedelta(days=1)),
    }
    assert "Past 7 days" in admin_client.get(reverse(DIALOGUES)).content.decode()
    assert listed(admin_client, week) == {failing.pk, quiet.pk}
    assert listed(admin_client, {**week, "problems": "yes"}) == {failing.pk}


def test_dialogue_search_finds_words_in_messages_case_insensitively(admin_client: Client) -> None:
    wanted, other = DialogueFactory(chat_id="c-1"), DialogueFactory(chat_id="c-2")
    say(wanted, "Where is my ORDER #42?")
    say(other, "Just browsing")
    say(other, "a.b", message_id="exact-id")
    assert listed(admin_client, {"q": "order"}) == {wanted.pk}
    assert listed(admin_client, {"q": "order #42?"}) == {wanted.pk}  # regex characters taken literally
    assert listed(admin_client, {"q": ".*"}) == set()
    assert listed(admin_client, {"q": "a.b"}) == {other.pk}
    assert listed(admin_client, {"q": "axb"}) == set()
    # Exact ids as before: the customer's chat id and any message's id.
    assert listed(admin_client, {"q": "c-1"}) == {wanted.pk}
    assert listed(admin_client, {"q": "exact-id"}) == {other.pk}
    assert listed(admin_client, {"q": "nothing like it"}) == set()


def test_dialogue_search_reads_only_the_recent_messages(admin_client: Client) -> None:
    dialogue = DialogueFactory()
    message = say(dialogue, "an ancient order")
    # Written before the search window: its _id says when it was made.
    old_id = ObjectId.from_datetime(timezone.now() - timedelta(days=dialogues_admin.TEXT_SEARCH_DAYS + 1))
    collection = connection.get_collection(Message._meta.db_table)  # type: ignore[attr-defined]
    doc = collection.find_one({"_id": message.pk})
    collection.delete_one({"_id": message.pk})
    collection.insert_one({**doc, "_id": old_id})
    assert listed(admin_client, {"q": "ancient"}) == set()


def test_dialogue_search_stops_at_its_budget_and_says_so(admin_client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(5):
        say(DialogueFactory(chat_id=f"many-{i}"), "same words")
    monkeypatch.setattr(dialogues_admin, "TEXT_SEARCH_DIALOGUES", 2)
    response = admin_client.get(reverse(DIALOGUES), {"q": "same words"})
    assert len(response.context["cl"].result_list) == 2
    assert "The text search stopped early" in response.content.decode()


# --- Deliveries ----------------------------------------------------------------------


def test_delivery_list_cuts_long_text_and_keeps_it_in_the_tooltip(admin_client: Client) -> None:
    dialogue = DialogueFactory()
    long_text = "word " * 60
    say(dialogue, long_text, role=Message.Role.ASSISTANT, delivery_state=DeliveryState.FAILED,
        last_error="connection refused " * 20)  # fmt: skip
    page = admin_client.get(reverse(DELIVERIES)).content.decode()
    assert f'title="{long_text}"' in page
    assert long_text + "<" not in page
    assert "dialogues/admin_lists.css" in page
    assert "UTC" in page


def test_delivery_page_has_a_redeliver_button_that_hands_the_reply_to_the_worker(admin_client: Client) -> None:
    dialogue = DialogueFactory()
    dead = say(dialogue, "sorry", role=Message.Role.ASSISTANT, delivery_state=DeliveryState.DEAD, in_reply_to="q")
    change = reverse("admin:dialogues_delivery_change", args=[dead.pk])
    redeliver = reverse("admin:dialogues_delivery_redeliver", args=[dead.pk])
    page = admin_client.get(change).content.decode()
    assert f'action="{redeliver}"' in page
    assert 'id="redeliver-now"' in page

    assert admin_client.get(redeliver).status_code == 405  # a GET changes nothing
    started = time.perf_counter()
    response = admin_client.post(redeliver, follow=True)
    assert time.perf_counter() - started < 2  # nothing waits on a channel
    assert response.redirect_chain[-1][0] == change
    assert "The worker makes one attempt within a second" in response.content.decode()
    dead.refresh_from_db()
    assert dead.delivery_state == DeliveryState.PENDING
    assert dead.delivery_revivals == 1


def test_redeliver_button_of_a_reply_delivered_meanwhile_changes_nothing(admin_client: Client) -> None:
    dialogue = DialogueFactory()
    failed = say(dialogue, "hi", role=Message.Role.ASSISTANT, delivery_state=DeliveryState.FAILED, in_reply_to="q")
    change = reverse("admin:dialogues_delivery_change", args=[failed.pk])
    admin_client.get(change)
    Message.objects.filter(pk=failed.pk).update(delivery_state=DeliveryState.DELIVERED)
    response = admin_client.post(reverse("admin:dialogues_delivery_redeliver", args=[failed.pk]))
    assert response.status_code == 404  # no longer an undelivered reply


def test_redeliver_button_needs_the_change_permission(client: Client, django_user_model: Any) -> None:
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_delivery", "view_message"]))
    client.force_login(viewer)
    dialogue = DialogueFactory()
    dead = say(dialogue, "x", role=Message.Role.ASSISTANT, delivery_state=DeliveryState.DEAD, in_reply_to="q")
    page = client.get(reverse("admin:dialogues_delivery_change", args=[dead.pk]))
    assert page.status_code == 200
    assert 'id="redeliver-now"' not in page.content.decode()
    assert client.post(reverse("admin:dialogues_delivery_redeliver", args=[dead.pk])).status_code == 403
    dead.refresh_from_db()
    assert dead.delivery_state == DeliveryState.DEAD
