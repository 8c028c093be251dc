"""What the dialogue's chat view and the lists say about a message's progress is what the
worker's state says: each test first reproduced a status seen wrong in the operators' walk."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from channels_app.models import Channel, DeliveryState
from devtools.receiver import ChannelReceiver, Reply
from dialogues.models import PAUSED_INDEFINITELY, Dialogue, Message
from dialogues.store.collections import dialogues_collection
from dialogues.tests.conftest import customer_message
from dialogues.tests.factories import DialogueFactory, MessageFactory

pytestmark = pytest.mark.django_db

Drain = Callable[[], None]
ANSWERING = "the bot is answering…"


@pytest.fixture
def admin_client(client: Client, staff_user: Any) -> Client:
    client.force_login(staff_user)
    return client


def transcript(client: Client, dialogue: Dialogue) -> str:
    response = client.get(reverse("admin:dialogues_dialogue_transcript", args=[dialogue.pk]))
    assert response.status_code == 200
    return response.content.decode()


def bubble(page: str, message_id: str) -> str:
    found = re.search(rf'data-message-id="{re.escape(message_id)}">(.*?)</li>', page, re.S)
    assert found, message_id
    return found.group(1)


def test_a_message_behind_a_failing_reply_says_it_waits_for_that_reply(
    admin_client: Client, channel: Channel, post_webhook: Any, receiver: ChannelReceiver, drain: Drain
) -> None:
    receiver.then(Reply(status=503))
    with override_settings(DELIVERY_RETRY_BASE_S=600, DELIVERY_RETRY_MAX_S=600):
        assert post_webhook(customer_message(channel, message_id="m-1", text="Hi")).status_code == 200
        drain()
        assert post_webhook(customer_message(channel, message_id="m-2", text="Anyone?")).status_code == 200
        drain()
    failing = Message.objects.get(in_reply_to="m-1")
    assert failing.delivery_state == DeliveryState.FAILED
    assert Message.objects.get(message_id="m-2").reply_state == Message.ReplyState.AWAITING

    state = bubble(transcript(admin_client, Dialogue.objects.get(channel=channel)), "m-2")
    assert ANSWERING not in state
    assert "waiting for an earlier reply to reach the channel" in state
    assert "next attempt" in state


def test_a_message_in_a_paused_chat_says_the_bot_is_paused(
    admin_client: Client, channel: Channel, post_webhook: Any, drain: Drain
) -> None:
    assert post_webhook(customer_message(channel, message_id="m-1", text="Hi")).status_code == 200
    dialogue = Dialogue.objects.get(channel=channel)
    # Taken over after the message came in, before the worker got to it.
    dialogues_collection().update_one({"_id": dialogue.pk}, {"$set": {"paused_until": PAUSED_INDEFINITELY}})
    state = bubble(transcript(admin_client, dialogue), "m-1")
    assert ANSWERING not in state and "the bot is paused" in state
    assert post_webhook(customer_message(channel, message_id="m-2", text="Hello?")).status_code == 200
    state = bubble(transcript(admin_client, dialogue), "m-2")
    assert ANSWERING not in state and "the bot was paused" in state


def test_a_message_whose_llm_call_is_retried_says_when(admin_client: Client) -> None:
    dialogue = DialogueFactory()
    later = timezone.now() + timedelta(minutes=2)
    MessageFactory(
        dialogue=dialogue, message_id="m-1", seq=1, reply_state=Message.ReplyState.AWAITING, llm_attempts=2,
        next_attempt_at=later, last_error="LLM timed out",
    )  # fmt: skip
    dialogues_collection().update_one({"_id": dialogue.pk}, {"$set": {"work_due_at": later, "done_seq": 0}})
    state = bubble(transcript(admin_client, dialogue), "m-1")
    assert ANSWERING not in state
    assert "the LLM failed (2 attempts)" in state and "next attempt" in state


def test_a_message_the_worker_is_on_says_the_bot_is_answering(admin_client: Client) -> None:
    dialogue = DialogueFactory()
    MessageFactory(dialogue=dialogue, message_id="m-1", seq=1, reply_state=Message.ReplyState.AWAITING)
    dialogues_collection().update_one({"_id": dialogue.pk}, {"$set": {"work_due_at": timezone.now()}})
    assert ANSWERING in bubble(transcript(admin_client, dialogue), "m-1")


def test_the_reply_hint_of_a_chat_taken_over_says_it_stays_paused(
    admin_client: Client, channel: Channel, post_webhook: Any, drain: Drain
) -> None:
    assert post_webhook(customer_message(channel, message_id="m-1", text="Hi")).status_code == 200
    drain()
    dialogue = Dialogue.objects.get(channel=channel)
    url = reverse("admin:dialogues_dialogue_change", args=[dialogue.pk])
    assert "Sending pauses the bot here for 30 minutes." in admin_client.get(url).content.decode()
    admin_client.post(reverse("admin:dialogues_dialogue_take_over", args=[dialogue.pk]))
    page = admin_client.get(url).content.decode()
    assert "Sending pauses the bot here" not in page
    assert "The bot stays paused here until it is given back." in page


def test_the_message_count_is_of_the_messages_shown(admin_client: Client, channel: Channel, post_webhook: Any) -> None:
    # Two answered messages and one whose reply is still owed: three stored, four reserved.
    dialogue = DialogueFactory(channel=channel, chat_bot=channel.chat_bot)
    for seq, role in ((1, Message.Role.USER), (2, Message.Role.ASSISTANT)):
        MessageFactory(dialogue=dialogue, seq=seq, role=role, message_id=f"x-{seq}")
    MessageFactory(dialogue=dialogue, seq=3, message_id="x-3", reply_state=Message.ReplyState.AWAITING)
    Dialogue.objects.filter(pk=dialogue.pk).update(message_count=4, last_seq=4)
    page = admin_client.get(reverse("admin:dialogues_dialogue_change", args=[dialogue.pk])).content.decode()
    assert "Messages (4 in total)" not in page
    assert "Messages (3 in total), oldest first" in page


def test_next_attempt_is_never_in_the_past(admin_client: Client) -> None:
    dialogue = DialogueFactory()
    channel = dialogue.channel
    probe = timezone.now() + timedelta(minutes=5)
    Channel.objects.filter(pk=channel.pk).update(consecutive_failures=5, breaker_open_until=probe)
    MessageFactory(
        dialogue=dialogue, role=Message.Role.ASSISTANT, in_reply_to="q", text="held by the breaker",
        delivery_state=DeliveryState.FAILED, next_attempt_at=timezone.now() - timedelta(minutes=3),
    )  # fmt: skip
    overdue = DialogueFactory()
    MessageFactory(
        dialogue=overdue, role=Message.Role.ASSISTANT, in_reply_to="q", text="overdue",
        delivery_state=DeliveryState.FAILED, next_attempt_at=timezone.now() - timedelta(minutes=10),
    )  # fmt: skip
    response = admin_client.get(reverse("admin:dialogues_delivery_changelist"))
    cells = re.findall(r'<td class="field-next_attempt">(.*?)</td>', response.content.decode(), re.S)
    assert len(cells) == 2
    held, late = cells[1], cells[0]  # newest first
    assert "breaker" in held and f"{timezone.localtime(probe):%H:%M}" in held
    assert "overdue since" in late


def test_not_generated_yet_is_explained(admin_client: Client) -> None:
    for url in (reverse("admin:index"), reverse("admin:dialogues_delivery_changelist")):
        page = admin_client.get(url).content.decode()
        assert "Not generated yet" in page
        assert "Customer messages whose reply the bot has not made yet" in page


def test_the_pause_filter_is_named_for_the_bot_state(admin_client: Client) -> None:
    # "By bot" above "paused / answering" read as a filter by bot.
    page = admin_client.get(reverse("admin:dialogues_dialogue_changelist")).content.decode()
    assert "By bot state" in page
