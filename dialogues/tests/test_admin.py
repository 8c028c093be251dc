from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from channels_app.models import Channel, DeliveryState
from channels_app.tests.factories import ChannelFactory
from core.db_routing import OPERATORS_DB
from devtools.receiver import ChannelReceiver, Reply
from dialogues.models import Delivery, Dialogue, Message
from dialogues.tests.conftest import customer_message
from dialogues.tests.factories import DialogueFactory, MessageFactory

pytestmark = pytest.mark.django_db

Drain = Callable[[], None]

DIALOGUES = "admin:dialogues_dialogue_changelist"
DELIVERIES = "admin:dialogues_delivery_changelist"


@pytest.fixture
def admin_client(client: Client, staff_user) -> Client:  # type: ignore[no-untyped-def]
    client.force_login(staff_user)
    return client


def add_messages(dialogue: Dialogue, count: int) -> None:
    """`count` messages one second apart, alternating user and assistant. Inserted raw, in
    bulk: the ORM's bulk_create takes twice as long for 10,000 documents."""
    base = timezone.now() - timedelta(days=1)
    docs = []
    for i in range(count):
        assistant = i % 2 == 1
        message = Message(
            dialogue=dialogue,
            chat_bot_id=dialogue.chat_bot_id,
            channel_id=dialogue.channel_id,
            message_id=f"m-{i:06d}",
            role=Message.Role.ASSISTANT if assistant else Message.Role.USER,
            text=f"text number {i}",
            created_at=base + timedelta(seconds=i),
            in_reply_to=f"m-{i - 1:06d}" if assistant else None,
            delivery_state=DeliveryState.DELIVERED if assistant else None,
        )
        docs.append({f.column: getattr(message, f.attname) for f in Message._meta.concrete_fields if not f.primary_key})
    connection.get_collection(Message._meta.db_table).insert_many(docs, ordered=False)
    Dialogue.objects.filter(pk=dialogue.pk).update(
        message_count=count, last_message_at=base + timedelta(seconds=count - 1)
    )


def timed_get(client: Client, url: str, query: dict[str, str] | None = None) -> tuple[object, float]:
    """The best of three loads: the machine is shared, and a page's cost is its best time."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        response = client.get(url, query or {})
        best = min(best, time.perf_counter() - started)
        assert response.status_code == 200
    return response, best


def reply(dialogue: Dialogue, state: str, **fields: object) -> Message:
    return MessageFactory(
        dialogue=dialogue, role=Message.Role.ASSISTANT, in_reply_to=f"in-{state}-{fields.pop('n', 0)}",
        delivery_state=state, **fields,
    )  # fmt: skip


# --- dialogues -----------------------------------------------------------------------


def test_dialogue_list_shows_bot_channel_chat_id_count_and_last_message(admin_client: Client) -> None:
    dialogue = DialogueFactory()
    add_messages(dialogue, 3)
    response = admin_client.get(reverse(DIALOGUES))
    assert response.status_code == 200
    page = response.content.decode()
    assert dialogue.chat_id in page
    assert dialogue.chat_bot.name in page
    assert dialogue.channel.name in page
    assert '<td class="field-message_count">3</td>' in page
    assert "Add dialogue" not in page  # dialogues come from the webhook only


def test_dialogue_list_costs_a_handful_of_queries_whatever_its_length(
    admin_client: Client, django_assert_max_num_queries
) -> None:  # type: ignore[no-untyped-def]
    DialogueFactory()
    with django_assert_max_num_queries(12, connection=connections[OPERATORS_DB]) as few:
        admin_client.get(reverse(DIALOGUES))
    assert len(few.captured_queries) > 0
    channel = ChannelFactory()
    for i in range(30):
        DialogueFactory(channel=channel, chat_id=f"chat-{i}")
    with django_assert_max_num_queries(len(few.captured_queries), connection=connections[OPERATORS_DB]):
        response = admin_client.get(reverse(DIALOGUES))
    assert len(response.context["cl"].result_list) == 31


def test_dialogue_list_filters_by_bot_and_channel(admin_client: Client) -> None:
    first, second = DialogueFactory(), DialogueFactory()
    for query, expected in (
        ({"chat_bot__id__exact": str(first.chat_bot_id)}, {first.pk}),
        ({"channel__id__exact": str(second.channel_id)}, {second.pk}),
    ):
        response = admin_client.get(reverse(DIALOGUES), query)
        assert {d.pk for d in response.context["cl"].result_list} == expected


def test_dialogue_search_by_chat_id_or_message_id(admin_client: Client) -> None:
    channel = ChannelFactory()
    first = DialogueFactory(channel=channel, chat_id="customer-42")
    second = DialogueFactory(channel=channel, chat_id="customer-43")
    MessageFactory(dialogue=second, message_id="msg-abc")

    def found(term: str) -> set[object]:
        response = admin_client.get(reverse(DIALOGUES), {"q": term})
        assert response.status_code == 200
        return {d.pk for d in response.context["cl"].result_list}

    assert found("customer-42") == {first.pk}
    assert found("msg-abc") == {second.pk}
    assert found("nobody") == set()


def test_dialogue_page_shows_messages_oldest_first_read_only(admin_client: Client) -> None:
    dialogue = DialogueFactory()
    add_messages(dialogue, 4)
    response = admin_client.get(reverse("admin:dialogues_dialogue_change", args=[dialogue.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    positions = [page.index(f"text number {i}") for i in range(4)]
    assert positions == sorted(positions)
    assert "bot reply" in page and "customer" in page and "delivered" in page
    assert 'name="_save"' not in page  # nothing to save: the page is read-only
    assert admin_client.post(reverse("admin:dialogues_dialogue_change", args=[dialogue.pk]), {}).status_code == 403


@pytest.mark.slow
def test_dialogue_page_of_ten_thousand_messages_loads_in_under_a_second(admin_client: Client) -> None:
    dialogue = DialogueFactory()
    add_messages(dialogue, 10_000)
    url = reverse("admin:dialogues_dialogue_change", args=[dialogue.pk])
    latest, elapsed = timed_get(admin_client, url)
    assert elapsed < 1.0
    rows = latest.context["history"]
    assert [m.message_id for m in rows] == [f"m-{i:06d}" for i in range(9_900, 10_000)]
    assert "10000 in total" in latest.content.decode()

    # Walk back page by page.
    older = latest.context["history_older"]
    seen = [m.message_id for m in rows]
    for _ in range(2):
        response = admin_client.get(url, {"before": str(older)})
        seen[:0] = [m.message_id for m in response.context["history"]]
        older = response.context["history_older"]
    assert seen == [f"m-{i:06d}" for i in range(9_700, 10_000)]

    # Deep in the past: the page before message 150 holds 50..149; 0..49 are the oldest.
    deep = Message.objects.get(dialogue=dialogue, message_id="m-000150")
    response, elapsed = timed_get(admin_client, url, {"before": str(deep.pk)})
    assert elapsed < 1.0
    assert [m.message_id for m in response.context["history"]] == [f"m-{i:06d}" for i in range(50, 150)]
    oldest = admin_client.get(url, {"before": str(response.context["history_older"])})
    assert [m.message_id for m in oldest.context["history"]] == [f"m-{i:06d}" for i in range(50)]
    assert oldest.context["history_older"] is None

    # And forward again from an old page.
    first_of_page = Message.objects.get(dialogue=dialogue, message_id="m-000099")
    response = admin_client.get(url, {"after": str(first_of_page.pk)})
    assert [m.message_id for m in response.context["history"]] == [f"m-{i:06d}" for i in range(100, 200)]
    assert response.context["history_newer"] is not None


def test_dialogue_page_ignores_a_malformed_cursor(admin_client: Client) -> None:
    dialogue = DialogueFactory()
    add_messages(dialogue, 2)
    response = admin_client.get(reverse("admin:dialogues_dialogue_change", args=[dialogue.pk]), {"before": "junk"})
    assert response.status_code == 200
    assert len(response.context["history"]) == 2


# --- deliveries ----------------------------------------------------------------------


def test_deliveries_list_only_undelivered_replies(admin_client: Client) -> None:
    dialogue = DialogueFactory()
    pending = reply(dialogue, DeliveryState.PENDING, text="waiting reply")
    failed = reply(dialogue, DeliveryState.FAILED, text="failing reply", last_error="HTTP 500")
    dead = reply(dialogue, DeliveryState.DEAD, text="dead reply")
    parked = reply(dialogue, DeliveryState.PARKED, text="parked reply", last_error="The channel is inactive")
    reply(dialogue, DeliveryState.DELIVERED, text="fine reply")
    MessageFactory(dialogue=dialogue, text="a user message")
    assert set(Delivery.objects.values_list("pk", flat=True)) == {pending.pk, failed.pk, dead.pk, parked.pk}

    response = admin_client.get(reverse(DELIVERIES))
    assert response.status_code == 200
    page = response.content.decode()
    assert "waiting reply" in page and "failing reply" in page and "dead reply" in page and "parked reply" in page
    assert "fine reply" not in page and "a user message" not in page
    assert "HTTP 500" in page and "The channel is inactive" in page

    filtered = admin_client.get(reverse(DELIVERIES), {"state": "failed"})
    assert [m.pk for m in filtered.context["cl"].result_list] == [failed.pk]
    by_parked = admin_client.get(reverse(DELIVERIES), {"state": "parked"})
    assert [m.pk for m in by_parked.context["cl"].result_list] == [parked.pk]
    owed = admin_client.get(reverse(DELIVERIES), {"state": "owed"})
    assert {m.pk for m in owed.context["cl"].result_list} == {pending.pk, failed.pk}
    view = admin_client.get(reverse("admin:dialogues_delivery_change", args=[failed.pk]))
    assert view.status_code == 200


def test_deliveries_filter_by_bot_and_channel(admin_client: Client) -> None:
    first, second = DialogueFactory(), DialogueFactory()
    mine = reply(first, DeliveryState.FAILED)
    theirs = reply(second, DeliveryState.FAILED)
    by_bot = admin_client.get(reverse(DELIVERIES), {"chat_bot__id__exact": str(first.chat_bot_id)})
    assert [m.pk for m in by_bot.context["cl"].result_list] == [mine.pk]
    by_channel = admin_client.get(reverse(DELIVERIES), {"channel__id__exact": str(second.channel_id)})
    assert [m.pk for m in by_channel.context["cl"].result_list] == [theirs.pk]


def test_deliveries_list_costs_a_handful_of_queries_whatever_its_length(
    admin_client: Client, django_assert_max_num_queries
) -> None:  # type: ignore[no-untyped-def]
    dialogue = DialogueFactory()
    reply(dialogue, DeliveryState.FAILED)
    # The page's channels and dialogues read by id (two queries), never joined.
    with django_assert_max_num_queries(16, connection=connections[OPERATORS_DB]) as few:
        admin_client.get(reverse(DELIVERIES))
    for n in range(1, 31):
        reply(DialogueFactory(channel=ChannelFactory(chat_bot=dialogue.chat_bot)), DeliveryState.PENDING, n=n)
    with django_assert_max_num_queries(len(few.captured_queries), connection=connections[OPERATORS_DB]):
        response = admin_client.get(reverse(DELIVERIES))
    assert len(response.context["cl"].result_list) == 31


def summary_numbers(page: str) -> list[int]:
    section = page[page.index('id="pipeline-summary"') :]
    row = section[section.index("<tbody>") : section.index("</tbody>")]
    return [int(value) for value in re.findall(r"<td>(?:<a [^>]*>)?(\d+)", row)]


def test_deliveries_page_summarises_the_pipeline_and_names_open_breakers(admin_client: Client) -> None:
    dialogue = DialogueFactory()
    soon = timezone.now() + timedelta(seconds=30)
    for n in range(2):
        MessageFactory(dialogue=dialogue, reply_state=Message.ReplyState.AWAITING, message_id=f"waiting-{n}")
    MessageFactory(dialogue=dialogue, reply_state=Message.ReplyState.FAILED, message_id="no-reply")
    reply(dialogue, DeliveryState.PENDING, n=1)
    reply(dialogue, DeliveryState.FAILED, n=2)
    reply(dialogue, DeliveryState.FAILED, n=3, claimed_until=soon)  # a worker is posting it now
    reply(dialogue, DeliveryState.PARKED, n=4)
    reply(dialogue, DeliveryState.DEAD, n=5)
    reply(dialogue, DeliveryState.DEAD, n=6)
    reply(dialogue, DeliveryState.DELIVERED, n=7)

    page = admin_client.get(reverse(DELIVERIES)).content.decode()
    # Not generated yet, owed to channels, in flight, parked, dead, no reply (LLM failed).
    assert summary_numbers(page) == [2, 3, 1, 1, 2, 1]
    assert 'id="open-breakers"' not in page

    broken = ChannelFactory(name="Shop that is down")
    Channel.objects.filter(pk=broken.pk).update(consecutive_failures=7, breaker_open_until=soon)
    recovered = ChannelFactory(name="Shop that recovered")
    Channel.objects.filter(pk=recovered.pk).update(consecutive_failures=0, breaker_open_until=soon)
    page = admin_client.get(reverse(DELIVERIES)).content.decode()
    breakers = page[page.index('id="open-breakers"') : page.index("</p>", page.index('id="open-breakers"'))]
    assert "Shop that is down" in breakers and "7 failures in a row" in breakers
    assert reverse("admin:channels_app_channel_change", args=[broken.pk]) in breakers
    assert "Shop that recovered" not in breakers


def redeliver(admin_client: Client, *messages: Message) -> list[str]:
    response = admin_client.post(
        reverse(DELIVERIES),
        {"action": "redeliver_now", "_selected_action": [str(m.pk) for m in messages]},
        follow=True,
    )
    assert response.status_code == 200
    return [str(m) for m in response.context["messages"]]


def failed_replies(channel: Channel, post_webhook, drain: Drain, *message_ids: str) -> list[Message]:  # type: ignore[no-untyped-def]
    """Replies that the worker tried once and failed (the receiver must be failing)."""
    for message_id in message_ids:
        post_webhook(customer_message(channel, message_id=message_id, chat_id=message_id, channel_id=str(channel.pk)))
    drain()
    replies = [Message.objects.get(role=Message.Role.ASSISTANT, in_reply_to=message_id) for message_id in message_ids]
    assert all(r.delivery_state == DeliveryState.FAILED for r in replies)
    return replies


def test_redeliver_now_hands_the_replies_to_the_worker(
    admin_client: Client, channel: Channel, post_webhook, receiver: ChannelReceiver, drain: Drain
) -> None:
    receiver.default = Reply(status=500)
    failed, dead = failed_replies(channel, post_webhook, drain, "m-1", "m-2")
    Message.objects.filter(pk=dead.pk).update(delivery_state=DeliveryState.DEAD, next_attempt_at=None)
    receiver.reset()

    notes = redeliver(admin_client, failed, dead)

    # The admin request sent nothing itself: the worker does.
    assert receiver.requests == []
    assert any(note.startswith("2 replies: the worker makes one attempt at each") for note in notes), notes
    dead.refresh_from_db()
    assert dead.delivery_state == DeliveryState.PENDING and dead.delivery_revivals == 1
    failed.refresh_from_db()
    assert failed.next_attempt_at is None  # its backoff is over: due now

    drain()
    assert sorted(r.json["message_id"] for r in receiver.requests) == sorted([failed.message_id, dead.message_id])
    assert not Delivery.objects.exists()
    assert set(Message.objects.filter(role="ASSISTANT").values_list("delivery_state", flat=True)) == {"delivered"}


@override_settings(DELIVERY_MAX_ATTEMPTS=2)
def test_redeliver_now_gives_a_dead_reply_exactly_one_more_attempt(
    admin_client: Client, channel: Channel, post_webhook, receiver: ChannelReceiver, drain: Drain
) -> None:
    receiver.default = Reply(status=400)
    [dead] = failed_replies(channel, post_webhook, drain, "m-1")
    Message.objects.filter(pk=dead.pk).update(delivery_state=DeliveryState.DEAD, delivery_attempts=2)
    receiver.reset()
    receiver.default = Reply(status=400)

    redeliver(admin_client, dead)
    assert receiver.requests == []
    drain()
    drain()

    dead.refresh_from_db()
    assert len(receiver.requests) == 1
    assert dead.delivery_state == DeliveryState.DEAD
    assert dead.delivery_attempts == 3 and dead.delivery_revivals == 1
    assert dead.last_status_code == 400
    # Its last error is on the list for the operator.
    assert "HTTP 400" in admin_client.get(reverse(DELIVERIES), {"state": "dead"}).content.decode()

    redeliver(admin_client, dead)  # and one more each time it is asked
    drain()
    dead.refresh_from_db()
    assert len(receiver.requests) == 2
    assert dead.delivery_attempts == 4 and dead.delivery_revivals == 2


def test_redeliver_now_of_a_reply_whose_channel_is_inactive_parks_it(
    admin_client: Client, channel: Channel, post_webhook, receiver: ChannelReceiver, drain: Drain
) -> None:
    receiver.default = Reply(status=500)
    [failed] = failed_replies(channel, post_webhook, drain, "m-1")
    Channel.objects.filter(pk=channel.pk).update(is_active=False)
    receiver.reset()

    redeliver(admin_client, failed)
    drain()

    failed.refresh_from_db()
    assert failed.delivery_state == DeliveryState.PARKED
    assert failed.last_error == "The channel is inactive"
    assert receiver.requests == []
    page = admin_client.get(reverse(DELIVERIES), {"state": "parked"}).content.decode()
    assert "The channel is inactive" in page


def test_dialogues_and_deliveries_cannot_be_added_or_deleted(admin_client: Client) -> None:
    dialogue = DialogueFactory()
    assert admin_client.get(reverse("admin:dialogues_dialogue_add")).status_code == 403
    assert admin_client.get(reverse("admin:dialogues_dialogue_delete", args=[dialogue.pk])).status_code == 403
    assert admin_client.get(reverse("admin:dialogues_delivery_add")).status_code == 403


def test_dialogue_page_shows_what_each_reply_cost(admin_client: Client) -> None:
    dialogue = DialogueFactory()
    MessageFactory(dialogue=dialogue, message_id="q-1", text="Hi")
    MessageFactory(
        dialogue=dialogue, role=Message.Role.ASSISTANT, in_reply_to="q-1", text="Hello!", delivery_state="delivered",
        llm_backend="openai", llm_model="gpt-4o-mini", prompt_tokens=31, completion_tokens=7, llm_latency_ms=812,
    )  # fmt: skip
    page = admin_client.get(reverse("admin:dialogues_dialogue_change", args=[dialogue.pk])).content.decode()
    assert "openai · gpt-4o-mini" in page and "31 + 7 tokens" in page and "812 ms" in page


def test_dialogue_page_shows_delivery_errors_and_headers_in_the_operators_language(admin_client: Client) -> None:
    dialogue = DialogueFactory()
    MessageFactory(dialogue=dialogue, message_id="q-1", text="Hi")
    MessageFactory(
        dialogue=dialogue, role=Message.Role.ASSISTANT, in_reply_to="q-1", text="Hello!", delivery_state="retrying",
        delivery_attempts=1, last_status_code=503, last_error="Received status code 503",
    )  # fmt: skip
    url = reverse("admin:dialogues_dialogue_change", args=[dialogue.pk])
    page = admin_client.get(url, HTTP_ACCEPT_LANGUAGE="ru").content.decode()
    assert "Received status code" not in page
    assert page.count("Получен код ответа 503") == 2  # the chat and the table
    assert "ID сообщения" in page and "Message id" not in page
    assert Message.objects.get(in_reply_to="q-1").last_error == "Received status code 503"
