"""The dialogue list operators look for conversations in (columns, filters, text search that
stays bounded), and the Deliveries screen's per-reply "Redeliver now"."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from channels_app.models import DeliveryState
from channels_app.tests.factories import ChannelFactory
from chatbots.tests.factories import ChatBotFactory
from core.db_routing import OPERATORS_DB
from dialogues import admin as dialogues_admin
from dialogues import selectors, selectors_lists, selectors_rows
from dialogues.models import PAUSED_INDEFINITELY, Dialogue, Message
from dialogues.selectors import DIALOGUE_SLICE_GROWTH, DIALOGUE_SLICES_MAX, newest_in_slices
from dialogues.selectors_lists import (
    DeliveryFilters,
    DialogueFilters,
    delivery_list_page,
    dialogue_list_page,
)
from dialogues.selectors_rows import dialogue_last_messages, dialogue_page_details, dialogue_problem_counts
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


@contextmanager
def commands_seen() -> Iterator[CaptureQueriesContext]:
    """What the admin's requests send to the database (they use the operators' connection)."""
    with CaptureQueriesContext(connections[OPERATORS_DB]) as captured:
        yield captured


def assert_bounded_reads(captured: CaptureQueriesContext) -> None:
    """No join and no count of a whole collection: each read is a page's worth."""
    sent = "\n".join(query["sql"] for query in captured.captured_queries)
    assert sent
    assert "$lookup" not in sent
    assert "__count" not in sent  # the ORM's count(), which the admin's paginator calls


def selected_by_reads(monkeypatch: pytest.MonkeyPatch, *, field: str) -> list[int]:
    """The documents each later list read with `field` in its filter examines (the server's
    `explain`; the embedded server reads a query's whole range before any limit), in order."""
    selected: list[int] = []
    real = selectors_lists.mongo_collection

    class Counting:
        def __init__(self, name: str) -> None:
            self.collection = real(name)

        def find(self, query: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            if field in query:
                selected.append(self.collection.find(query).explain()["executionStats"]["totalDocsExamined"])
            return self.collection.find(query, *args, **kwargs)

    for module in (selectors, selectors_lists, selectors_rows):
        monkeypatch.setattr(module, "mongo_collection", Counting)
    return selected


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


def test_dialogue_list_reads_a_few_messages_per_row_whatever_the_dialogues_lengths(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each row's preview is a point read of its last few positions, and the problem counts
    read only the failed and dead replies: the page examines the same bounded number of messages
    for dialogues of 3 messages as of 30 (a batched read of the rows' messages examined all 300,
    under the embedded server's storage-wide lock)."""
    channel = ChannelFactory()
    dialogues = [DialogueFactory(channel=channel, chat_id=f"chat-{i}") for i in range(10)]

    def examined() -> int:
        reads = selected_by_reads(monkeypatch, field="dialogue_id")
        response = admin_client.get(reverse(DIALOGUES))
        monkeypatch.undo()
        assert len(response.context["cl"].result_list) == 10
        assert response.content.decode().count("1 failed reply<") == 10
        return sum(reads)

    for length in (3, 30):
        for dialogue in dialogues:
            dialogue.refresh_from_db()
            if length == 3:
                say(dialogue, "r", role=Message.Role.ASSISTANT, delivery_state=DeliveryState.FAILED)
            while dialogue.message_count < length:
                say(dialogue, f"text {dialogue.message_count}")
        # At most a window of 4 positions per row, and the 10 failed replies.
        assert examined() <= 10 * 4 + 10, length


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
    # Its cost at scale is the data-at-scale benchmark's to measure (docs/benchmarks.md).
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
    assert listed(admin_client, {"channel__id__exact": str(failing.channel_id), "problems": "yes"}) == {failing.pk}
    assert listed(admin_client, {"channel__id__exact": str(quiet.channel_id), "problems": "yes"}) == set()
    assert "Past 7 days" in admin_client.get(reverse(DIALOGUES)).content.decode()
    assert listed(admin_client, {"active": "7d"}) == {failing.pk, quiet.pk}
    assert listed(admin_client, {"active": "30d", "problems": "yes"}) == {failing.pk}
    assert listed(admin_client) == {failing.pk, quiet.pk, old.pk}


def test_dialogue_list_filters_by_pause(admin_client: Client) -> None:
    paused, answering, resumed = DialogueFactory(), DialogueFactory(), DialogueFactory()
    for dialogue in (paused, answering, resumed):
        say(dialogue, "hi")
    now = timezone.now()
    Dialogue.objects.filter(pk=paused.pk).update(paused_until=now + timedelta(minutes=30))
    Dialogue.objects.filter(pk=resumed.pk).update(paused_until=now - timedelta(minutes=1))
    assert listed(admin_client, {"paused": "yes"}) == {paused.pk}
    assert listed(admin_client, {"paused": "no"}) == {answering.pk, resumed.pk}
    assert listed(admin_client, {"paused": "yes", "channel__id__exact": str(answering.channel_id)}) == set()


def _paused_pages(filters: DialogueFilters, now: datetime, count: int) -> list[object]:
    """Every page of the paused list through its cursors, in order."""
    seen: list[object] = []
    cursor = None
    for _page in range(50):
        page = dialogue_list_page(filters=filters, cursor=cursor, count=count, now=now)
        seen += [row.pk for row in page.rows]
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor
    raise AssertionError("the pages never end")


@pytest.mark.parametrize("count", [1, 2, 5, 100])
def test_paused_list_pages_through_every_kind_of_pause_in_the_list_order(count: int) -> None:
    """Pauses until resumed (one date, walked in slices of the last message's time) and pauses
    that end by themselves (read whole), merged in the list's order (most recently active
    first, the id breaking ties, never-active dialogues last), across pages, with a bot and an
    activity filter; resumed and never paused dialogues are left out."""
    now = timezone.now()
    bot_channel = ChannelFactory()
    other = ChannelFactory()
    ages = [None, timedelta(0), timedelta(minutes=3), timedelta(minutes=3), timedelta(hours=2), timedelta(days=3),
            timedelta(days=40), timedelta(days=400), None]  # fmt: skip
    expected: list[tuple[Dialogue, bool]] = []
    for i, age in enumerate(ages):
        for channel in (bot_channel, other):
            dialogue = DialogueFactory(channel=channel, chat_id=f"{channel.pk}-{i}", last_message_at=None)
            until = PAUSED_INDEFINITELY if i % 3 else now + timedelta(minutes=30)
            last = now - age if age is not None else None
            Dialogue.objects.filter(pk=dialogue.pk).update(paused_until=until, last_message_at=last)
            dialogue.refresh_from_db()
            expected.append((dialogue, channel == bot_channel))
    for channel in (bot_channel, other):  # resumed, never paused: not listed
        resumed = DialogueFactory(channel=channel, chat_id=f"{channel.pk}-resumed")
        Dialogue.objects.filter(pk=resumed.pk).update(paused_until=now - timedelta(minutes=1))
        DialogueFactory(channel=channel, chat_id=f"{channel.pk}-answering")

    def order(dialogues: list[Dialogue]) -> list[object]:
        key = lambda d: (d.last_message_at is not None, d.last_message_at or now, d.pk)  # noqa: E731
        return [d.pk for d in sorted(dialogues, key=key, reverse=True)]

    every = [d for d, _ in expected]
    assert _paused_pages(DialogueFilters(paused=True), now, count) == order(every)
    mine = [d for d, of_bot in expected if of_bot]
    assert _paused_pages(DialogueFilters(paused=True, chat_bot_id=bot_channel.chat_bot_id), now, count) == order(mine)
    assert _paused_pages(DialogueFilters(paused=True, channel_id=other.pk), now, count) == order(
        [d for d, of_bot in expected if not of_bot]
    )
    since = now - timedelta(days=5)
    recent = [d for d in every if d.last_message_at is not None and d.last_message_at >= since]
    assert _paused_pages(DialogueFilters(paused=True, since=since), now, count) == order(recent)


def test_paused_list_reads_slices_not_every_paused_dialogue(monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator may leave hundreds of dialogues paused until resumed: the first page reads
    the newest slices of them on the index (the embedded server reads a query's whole range,
    under its storage-wide lock), not all of them."""
    now = timezone.now()
    channel = ChannelFactory()
    for i in range(120):
        dialogue = DialogueFactory(channel=channel, chat_id=f"paused-{i}")
        Dialogue.objects.filter(pk=dialogue.pk).update(
            paused_until=PAUSED_INDEFINITELY, last_message_at=now - timedelta(minutes=10 * i)
        )
    selected = selected_by_reads(monkeypatch, field="paused_until")
    page = dialogue_list_page(filters=DialogueFilters(paused=True), cursor=None, count=10, now=now)
    assert len(page.rows) == 10 and page.next_cursor is not None
    assert sum(selected) <= 40, selected


def test_dialogue_search_matches_the_start_of_chat_ids_and_message_ids(admin_client: Client) -> None:
    wanted, other = DialogueFactory(chat_id="customer-17"), DialogueFactory(chat_id="c-2")
    say(wanted, "Where is my ORDER #42?")
    say(other, "a.b", message_id="wamid.HBgL-1")
    assert listed(admin_client, {"q": "customer-17"}) == {wanted.pk}
    assert listed(admin_client, {"q": "customer-"}) == {wanted.pk}  # the start of a chat id
    assert listed(admin_client, {"q": "wamid.HB"}) == {other.pk}  # the start of a message id
    assert listed(admin_client, {"q": "wamid.HBgL-1"}) == {other.pk}
    assert listed(admin_client, {"q": str(other.pk)}) == {other.pk}  # a dialogue id
    # Not a text search, and regex characters are taken literally.
    assert listed(admin_client, {"q": "ORDER"}) == set()
    assert listed(admin_client, {"q": ".*"}) == set()
    assert listed(admin_client, {"q": "ustomer"}) == set()
    page = admin_client.get(reverse(DIALOGUES)).content.decode()
    assert "The start of a customer chat id or of a message id" in page


def test_dialogue_list_pages_on_with_next_page_links_in_its_order(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dialogues_admin.DialogueAdmin, "list_per_page", 3)
    base = timezone.now() - timedelta(hours=3)
    dialogues = []
    for i in range(7):
        dialogue = DialogueFactory(chat_id=f"p-{i}")
        Dialogue.objects.filter(pk=dialogue.pk).update(last_message_at=base + timedelta(minutes=i))
        dialogues.append(dialogue.pk)
    newest_first = list(reversed(dialogues))
    seen: list[object] = []
    url = reverse(DIALOGUES)
    query: dict[str, str] = {}
    for _page in range(4):
        response = admin_client.get(url, query)
        assert response.status_code == 200
        seen += [d.pk for d in response.context["cl"].result_list]
        next_url = response.context["cl"].next_page_url
        if not next_url:
            break
        query = {key: value for key, value in (pair.split("=") for pair in next_url.lstrip("?").split("&"))}
    assert seen == newest_first


def test_dialogue_list_counts_nothing_and_joins_nothing(admin_client: Client) -> None:
    for i in range(3):
        dialogue = DialogueFactory(chat_id=f"c-{i}")
        say(dialogue, "hi")
        say(dialogue, "reply", role=Message.Role.ASSISTANT, delivery_state=DeliveryState.FAILED)
    for query in ({}, {"problems": "yes"}, {"paused": "no"}, {"active": "today"}, {"q": "c-1"}, {"o": "1"}):
        with commands_seen() as seen:
            response = admin_client.get(reverse(DIALOGUES), query)
        assert response.status_code == 200
        assert response.context["cl"].result_list
        assert_bounded_reads(seen)


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


def delivered_list(client: Client, query: dict[str, str] | None = None) -> list[object]:
    response = client.get(reverse(DELIVERIES), query or {})
    assert response.status_code == 200
    return [m.pk for m in response.context["cl"].result_list]


def test_delivery_list_is_newest_first_and_filters_searches_and_pages(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = DialogueFactory(), DialogueFactory()
    base = timezone.now() - timedelta(hours=2)
    made = []
    for i, (dialogue, state) in enumerate(
        [(first, DeliveryState.FAILED), (first, DeliveryState.PENDING), (second, DeliveryState.DEAD),
         (second, DeliveryState.FAILED), (first, DeliveryState.PARKED)]
    ):  # fmt: skip
        made.append(
            say(
                dialogue,
                f"reply {i}",
                role=Message.Role.ASSISTANT,
                delivery_state=state,
                message_id=f"r-{i}",
                created_at=base + timedelta(minutes=i),
            )  # fmt: skip
        )
    say(first, "fine", role=Message.Role.ASSISTANT, delivery_state=DeliveryState.DELIVERED, message_id="r-ok")
    newest_first = [m.pk for m in reversed(made)]
    assert delivered_list(admin_client) == newest_first
    assert delivered_list(admin_client, {"state": "failed"}) == [made[3].pk, made[0].pk]
    assert delivered_list(admin_client, {"state": "owed"}) == [made[3].pk, made[1].pk, made[0].pk]
    assert delivered_list(admin_client, {"channel__id__exact": str(second.channel_id)}) == [made[3].pk, made[2].pk]
    assert delivered_list(admin_client, {"chat_bot__id__exact": str(first.chat_bot_id)}) == [
        made[4].pk, made[1].pk, made[0].pk,
    ]  # fmt: skip
    assert delivered_list(admin_client, {"dialogue__id__exact": str(second.pk)}) == [made[3].pk, made[2].pk]
    assert delivered_list(admin_client, {"q": "r-3"}) == [made[3].pk]
    assert delivered_list(admin_client, {"q": "r-"}) == newest_first  # the start of a message id
    assert delivered_list(admin_client, {"q": "eply"}) == []
    Message.objects.filter(pk=made[3].pk).update(claimed_until=timezone.now() + timedelta(seconds=30))
    assert delivered_list(admin_client, {"state": "in_flight"}) == [made[3].pk]

    # Two to a page: the next page starts where the last one ended.
    monkeypatch.setattr(dialogues_admin.DeliveryAdmin, "list_per_page", 2)
    seen: list[object] = []
    query: dict[str, str] = {}
    for _page in range(5):
        response = admin_client.get(reverse(DELIVERIES), query)
        seen += [m.pk for m in response.context["cl"].result_list]
        next_url = response.context["cl"].next_page_url
        if not next_url:
            break
        assert "Next page" in response.content.decode()
        query = dict(pair.split("=") for pair in next_url.lstrip("?").split("&"))
    assert seen == newest_first


def test_delivery_list_counts_nothing_and_joins_nothing(admin_client: Client) -> None:
    dialogue = DialogueFactory()
    for i in range(3):
        say(
            dialogue, f"reply {i}", role=Message.Role.ASSISTANT, delivery_state=DeliveryState.FAILED, message_id=f"r{i}"
        )
    queries = (
        {}, {"state": "failed"}, {"state": "in_flight"}, {"state": "owed"}, {"q": "r1"},
        {"channel__id__exact": str(dialogue.channel_id)}, {"chat_bot__id__exact": str(dialogue.chat_bot_id)},
        {"o": "3"},
    )  # fmt: skip
    for query in queries:
        with commands_seen() as seen:
            response = admin_client.get(reverse(DELIVERIES), query)
        assert response.status_code == 200
        assert_bounded_reads(seen)


def test_delivery_page_reads_the_reply_by_id_alone(admin_client: Client) -> None:
    dialogue = DialogueFactory()
    failed = say(dialogue, "x", role=Message.Role.ASSISTANT, delivery_state=DeliveryState.FAILED, message_id="f")
    delivered = say(dialogue, "y", role=Message.Role.ASSISTANT, delivery_state=DeliveryState.DELIVERED, message_id="d")
    with commands_seen() as seen:
        response = admin_client.get(reverse("admin:dialogues_delivery_change", args=[failed.pk]))
    assert response.status_code == 200
    reads = [q["sql"] for q in seen.captured_queries if Message._meta.db_table in q["sql"]]
    assert reads and not any("$and" in sql for sql in reads)  # an `$and` with the _id is a scan
    # A delivered reply is not one of these pages.
    response = admin_client.get(reverse("admin:dialogues_delivery_change", args=[delivered.pk]))
    assert response.status_code == 302


def test_dialogue_list_counts_the_problems_of_long_dialogues_without_reading_them(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long dialogue's failed and dead replies are counted on their own indexes, not by
    reading its history; its channel's other dialogues' problems are not its own."""
    long, other = DialogueFactory(), DialogueFactory()
    say(long, "hi")
    say(long, "r1", role=Message.Role.ASSISTANT, delivery_state=DeliveryState.FAILED)
    say(long, "r2", role=Message.Role.ASSISTANT, delivery_state=DeliveryState.DEAD, in_reply_to="x")
    say(long, "r3", role=Message.Role.ASSISTANT, delivery_state=DeliveryState.DELIVERED, in_reply_to="y")
    # Another dialogue of the same channel with a problem of its own, and one elsewhere.
    sibling = DialogueFactory(channel=long.channel, chat_id="sibling")
    say(sibling, "r", role=Message.Role.ASSISTANT, delivery_state=DeliveryState.FAILED)
    say(other, "r", role=Message.Role.ASSISTANT, delivery_state=DeliveryState.DEAD)
    for i in range(40):
        say(long, f"more {i}", role=Message.Role.ASSISTANT, delivery_state=DeliveryState.DELIVERED, in_reply_to=f"m{i}")
    long.refresh_from_db()

    selected = selected_by_reads(monkeypatch, field="delivery_state")
    counts = dialogue_problem_counts([long, sibling, other])
    assert counts == {long.pk: 2, sibling.pk: 1, other.pk: 1}
    assert sum(selected) == 4  # the four problem replies, nothing of the 44 others
    monkeypatch.undo()
    page = admin_client.get(reverse(DIALOGUES)).content.decode()
    assert "2 failed replies" in page


def test_dialogue_page_details_give_each_rows_last_message_and_problems(admin_client: Client) -> None:
    """The last message and the failed and dead replies of each row, short or long, and
    nothing for a dialogue without messages."""
    short, medium, empty = DialogueFactory(), DialogueFactory(), DialogueFactory()
    say(short, "hi")
    say(short, "r1", role=Message.Role.ASSISTANT, delivery_state=DeliveryState.FAILED)
    say(short, "r2", role=Message.Role.ASSISTANT, delivery_state=DeliveryState.DEAD, in_reply_to="x")
    say(short, "the last one")
    say(medium, "r", role=Message.Role.ASSISTANT, delivery_state=DeliveryState.DEAD)
    for i in range(40):
        say(medium, f"more {i}")
    say(medium, "medium's last", role=Message.Role.ASSISTANT, delivery_state=DeliveryState.DELIVERED, in_reply_to="y")
    rows = [short, medium, empty]

    last, problems = dialogue_page_details(rows)

    assert problems == {short.pk: 2, medium.pk: 1} == dialogue_problem_counts(rows)
    assert {pk: doc["text"] for pk, doc in last.items()} == {short.pk: "the last one", medium.pk: "medium's last"}
    assert {pk: doc["text"] for pk, doc in dialogue_last_messages(rows).items()} == {
        pk: doc["text"] for pk, doc in last.items()
    }
    page = admin_client.get(reverse(DIALOGUES)).content.decode()
    assert "2 failed replies" in page and "the last one" in page


def test_the_deliveries_of_every_channel_after_a_quiet_stretch_are_read_in_narrow_slices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Failed replies of five hours, ten quiet hours ago: the Deliveries list of every channel
    doubles its slices across the quiet stretch, so the first busy slice holds part of them,
    not all (growing fourfold, one read held all 300), and the next slice is sized by where
    the first one's replies lie, not by its whole width (which made it hold 166)."""
    now = timezone.now()
    dialogue = DialogueFactory()
    for minute in range(300):
        MessageFactory(
            dialogue=dialogue, role=Message.Role.ASSISTANT, delivery_state=DeliveryState.FAILED, seq=minute + 1,
            created_at=now - timedelta(hours=10, minutes=minute),
        )  # fmt: skip
    selected = selected_by_reads(monkeypatch, field="delivery_state")
    page = delivery_list_page(filters=DeliveryFilters(states=("failed",)), cursor=None, count=50, now=now)
    assert len(page.rows) == 50
    assert max(selected) <= 60, str(selected)


@pytest.mark.parametrize("per_minute", [2, 7, 30, 80])
def test_slices_checked_here_are_sized_by_what_they_read_not_what_they_kept(per_minute: int) -> None:
    """A filter checked here that keeps nothing (no reply in flight among many owed): each
    slice is sized to what is left of the scan's budget at the density just read, so the walk
    reads about the budget, however dense the data, instead of growing fourfold past it (the
    first slice, of a fixed width, here under the budget)."""
    edge = datetime(2026, 12, 1, tzinfo=UTC)
    seen = {"total": 0, "last": 0}

    def read(when: dict[str, Any], wanted: int) -> list[int]:
        minutes = (when.get("$lt", edge) - when["$gte"]).total_seconds() / 60
        seen["last"] = int(minutes * per_minute)
        seen["total"] += seen["last"]
        return []  # none kept

    def sizing() -> tuple[int, int]:
        return seen["last"], max(1, 500 - seen["total"])

    newest_in_slices(edge, read, 51, bounded=False, stop=lambda: seen["total"] >= 500, sizing=sizing)
    assert 500 <= seen["total"] <= 800, seen


@pytest.mark.parametrize("quiet_minutes", [7, 40, 300, 1441, 4000, 20_000, 60_000])
def test_the_first_busy_slice_after_a_quiet_stretch_is_at_most_as_wide_as_the_stretch(quiet_minutes: int) -> None:
    """Nothing for a while, then busy data: the slice that first reaches it is read whole by
    the embedded server, under its storage-wide lock (docs/internals.md, "Known quirks"), so
    what it holds is what the webhook waits for. Doubling while the slices are empty bounds it
    by the quiet stretch (plus the first slice); growing fourfold let it reach three times that.
    The dialogue list walks with DIALOGUE_SLICE_GROWTH (`dialogue_keyset`)."""
    edge = datetime(2026, 12, 1, tzinfo=UTC)
    per_minute = 10
    busiest = {"rows": 0}

    def read(when: dict[str, Any], wanted: int) -> list[int]:
        newer = (edge - when.get("$lt", edge)).total_seconds() / 60
        older = (edge - when["$gte"]).total_seconds() / 60
        busy_minutes = max(0.0, older - max(newer, quiet_minutes))
        rows = int(busy_minutes * per_minute)
        busiest["rows"] = max(busiest["rows"], rows)
        return list(range(min(rows, wanted)))

    found = newest_in_slices(edge, read, 51, bounded=False, growth=DIALOGUE_SLICE_GROWTH, slices=DIALOGUE_SLICES_MAX)
    assert len(found) == 51
    assert busiest["rows"] <= (quiet_minutes + 5) * per_minute, busiest


def _quiet_then_busy(now: datetime, *, quiet_hours: float, busy: int, every: timedelta) -> list[Dialogue]:
    """`busy` dialogues active `every` apart, the newest of them `quiet_hours` ago."""
    channel = ChannelFactory()
    return Dialogue.objects.bulk_create(
        DialogueFactory.build(channel=channel, chat_id=f"busy-{i}", message_count=2,
                              last_message_at=now - timedelta(hours=quiet_hours) - every * i)
        for i in range(busy)
    )  # fmt: skip


def _assert_the_second_walk_reads_a_pages_worth(
    monkeypatch: pytest.MonkeyPatch, now: datetime, expected: list[object]
) -> None:
    """The first page, walked twice: the first walk reads over 300 dialogues in its largest
    read, the second (hinted) at most 80; both list `expected`, in order."""
    selected = selected_by_reads(monkeypatch, field="last_message_at")
    first = dialogue_list_page(filters=DialogueFilters(), cursor=None, count=50, now=now)
    assert [d.pk for d in first.rows] == expected
    assert max(selected) > 300, selected
    selected.clear()
    again = dialogue_list_page(filters=DialogueFilters(), cursor=None, count=50, now=now + timedelta(seconds=30))
    assert [d.pk for d in again.rows] == expected
    assert again.next_cursor == first.next_cursor
    assert max(selected) <= 80, selected


def test_a_second_walk_past_a_quiet_stretch_reads_a_pages_worth_of_the_busy_data(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three quiet days, then a dialogue every 2 minutes: the first walk's slice that reaches
    them holds whatever part of them the doubling put in it (here over 300); the next walk,
    hinted where they start and how dense they are, reads about a page's worth, and both list
    the same dialogues in the same order."""
    now = timezone.now()
    dialogues = _quiet_then_busy(now, quiet_hours=72, busy=400, every=timedelta(minutes=2))
    expected = [d.pk for d in dialogues[:50]]
    _assert_the_second_walk_reads_a_pages_worth(monkeypatch, now, expected)


def test_a_few_dialogues_scattered_through_the_quiet_stretch_do_not_hide_where_the_busy_data_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As the bench's 250,000: a few dialogues from the last hours (sized from their sparse
    density, the slice past them reached deep into the busy data, and no empty slice came
    before it), then the busy days. The second walk reads about a page's worth of the busy data."""
    now = timezone.now()
    scattered = [
        DialogueFactory(last_message_at=now - timedelta(hours=1) - timedelta(minutes=200) * i) for i in range(20)
    ]
    dialogues = _quiet_then_busy(now, quiet_hours=72, busy=400, every=timedelta(minutes=2))
    expected = [d.pk for d in scattered] + [d.pk for d in dialogues[:30]]
    _assert_the_second_walk_reads_a_pages_worth(monkeypatch, now, expected)


def test_a_stale_busy_hint_costs_slices_not_rows() -> None:
    """The hint's dialogues moved to the top since (new messages): the walk still lists every
    dialogue in order, the moved ones first."""
    now = timezone.now()
    dialogues = _quiet_then_busy(now, quiet_hours=72, busy=120, every=timedelta(minutes=2))
    dialogue_list_page(filters=DialogueFilters(), cursor=None, count=50, now=now)
    moved = dialogues[:30]
    for i, dialogue in enumerate(moved):
        Dialogue.objects.filter(pk=dialogue.pk).update(last_message_at=now - timedelta(seconds=i))
    page = dialogue_list_page(filters=DialogueFilters(), cursor=None, count=50, now=now)
    assert [d.pk for d in page.rows] == [d.pk for d in moved] + [d.pk for d in dialogues[30:50]]


def test_the_active_since_filter_reads_nothing_older(monkeypatch: pytest.MonkeyPatch) -> None:
    """Active today: the walk stops at the day's start, however busy the days before (it read
    on into them for a page's worth before finding that none was recent enough)."""
    now = timezone.now()
    today = [DialogueFactory(last_message_at=now - timedelta(minutes=i)) for i in range(3)]
    _quiet_then_busy(now, quiet_hours=30, busy=200, every=timedelta(minutes=1))
    selected = selected_by_reads(monkeypatch, field="last_message_at")
    page = dialogue_list_page(filters=DialogueFilters(since=now - timedelta(hours=20)), cursor=None, count=50, now=now)
    assert [d.pk for d in page.rows] == [d.pk for d in today]
    assert page.next_cursor is None
    assert max(selected) <= 3, selected
