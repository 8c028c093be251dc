"""The benchmark's seed writes documents the app reads: the admin's lists and the API show them."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from bench.seed import chat_id_of, seed
from channels_app.tests.factories import ChannelFactory
from chatbots.tests.factories import ChatBotFactory
from core.mongo import mongo_collection
from dialogues.models import Delivery, Dialogue, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def tenants() -> list[tuple[object, object]]:
    bot = ChatBotFactory()
    return [(bot.pk, ChannelFactory(chat_bot=bot).pk), (bot.pk, ChannelFactory(chat_bot=bot).pk)]


def test_seed_fills_and_tops_up_dialogues_the_app_reads(tenants) -> None:  # type: ignore[no-untyped-def]
    db = mongo_collection("dialogues_dialogue").database

    first = seed(db, tenants=tenants, dialogues=24, messages=96)
    again = seed(db, tenants=tenants, dialogues=24, messages=240)

    assert (first.dialogues_added, first.messages_added) == (24, 96)
    assert (again.dialogues_added, again.messages_added) == (0, 144)
    assert Dialogue.objects.count() == 24
    assert Message.objects.count() == 240
    dialogue = Dialogue.objects.get(chat_id=chat_id_of(13))
    assert dialogue.is_paused
    assert dialogue.message_count == dialogue.messages.count() == 10
    seqs = list(dialogue.messages.values_list("seq", flat=True))
    assert seqs == sorted(seqs) and seqs[-1] <= dialogue.__dict__.get("last_seq", seqs[-1])
    assert Message.objects.filter(role="EMPLOYEE", author_username__isnull=False).exists()
    states = set(Message.objects.filter(role="ASSISTANT").values_list("delivery_state", flat=True))
    assert {"delivered", "failed", "cancelled"} <= states
    assert Delivery.objects.exists()


def test_seeded_dialogues_show_in_the_admin_and_the_api(  # type: ignore[no-untyped-def]
    tenants, client: Client, staff_user, api_client: APIClient
) -> None:
    seed(mongo_collection("dialogues_dialogue").database, tenants=tenants, dialogues=12, messages=48)
    client.force_login(staff_user)

    admin_list = client.get(reverse("admin:dialogues_dialogue_changelist"))
    deliveries = client.get(reverse("admin:dialogues_delivery_changelist"))
    dialogue = Dialogue.objects.get(chat_id=chat_id_of(3))
    change = client.get(reverse("admin:dialogues_dialogue_change", args=[dialogue.pk]))
    api_list = api_client.get("/api/dialogues/")
    api_detail = api_client.get(f"/api/dialogues/{dialogue.pk}/messages/")
    own = api_client.get(f"/api/channels/{tenants[0][1]}/dialogue")

    assert admin_list.status_code == deliveries.status_code == change.status_code == 200
    assert chat_id_of(11) in admin_list.content.decode()
    # Window lists show no total: the page holds them all.
    assert len(admin_list.context["cl"].result_list) == Dialogue.objects.count() == 12
    assert api_list.status_code == 200
    assert {d["chat_id"] for d in api_list.json()["results"]} >= {chat_id_of(11), str(tenants[0][1])}
    assert api_detail.status_code == 200 and len(api_detail.json()["message_list"]) == 4
    assert own.status_code == 200 and own.json()["chat_id"] == str(tenants[0][1])
