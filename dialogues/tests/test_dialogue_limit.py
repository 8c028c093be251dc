"""WEBHOOK_MAX_DIALOGUES_PER_BOT: dialogues a bot opens through `channel_id` are counted and
bounded; everything else passes."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.core.management import call_command
from django.test import override_settings
from rest_framework.test import APIClient

from channels_app.models import Channel
from channels_app.tests.factories import ChannelFactory
from chatbots.models import ChatBot
from chatbots.tests.factories import ChatBotFactory
from devtools.receiver import ChannelReceiver
from dialogues.models import Dialogue, Message
from dialogues.store.counters import counters_collection
from dialogues.tests.conftest import WEBHOOK_URL, PostWebhook, customer_message

pytestmark = pytest.mark.django_db


def _open(post_webhook: PostWebhook, channel: Channel, chat_id: str, message_id: str = "m-1") -> Any:
    return post_webhook(customer_message(channel, chat_id=chat_id, channel_id=str(channel.pk), message_id=message_id))


def _counted(bot: ChatBot) -> int:
    doc = counters_collection().find_one({"_id": bot.pk})
    return int(doc["dialogues"]) if doc else 0


@override_settings(WEBHOOK_MAX_DIALOGUES_PER_BOT=2)
def test_a_new_chat_past_the_limit_is_409_and_stores_nothing(channel: Channel, post_webhook: PostWebhook) -> None:
    assert _open(post_webhook, channel, "a").status_code == 200
    assert _open(post_webhook, channel, "b").status_code == 200

    response = _open(post_webhook, channel, "c", message_id="m-c")
    assert response.status_code == 409
    assert "limit of 2 dialogues" in response.json()["detail"]
    assert set(response.json()) == {"detail"}
    assert not Dialogue.objects.filter(chat_id="c").exists()
    assert not Message.objects.filter(message_id="m-c").exists()
    assert _counted(channel.chat_bot) == 2
    # Refused again, not counted again.
    assert _open(post_webhook, channel, "c", message_id="m-c").status_code == 409
    assert _counted(channel.chat_bot) == 2


@override_settings(WEBHOOK_MAX_DIALOGUES_PER_BOT=1)
def test_existing_dialogues_keep_taking_messages(channel: Channel, post_webhook: PostWebhook) -> None:
    assert _open(post_webhook, channel, "a").status_code == 200
    assert _open(post_webhook, channel, "b").status_code == 409
    for n in range(2, 5):
        response = _open(post_webhook, channel, "a", message_id=f"m-{n}")
        assert response.status_code == 200 and response.json()["duplicate"] is False
    assert Message.objects.filter(dialogue__chat_id="a", role=Message.Role.USER).count() == 4
    assert _counted(channel.chat_bot) == 1


@override_settings(WEBHOOK_MAX_DIALOGUES_PER_BOT=1)
def test_the_plain_contract_is_not_limited(
    bot: ChatBot, channel: Channel, post_webhook: PostWebhook, receiver: ChannelReceiver
) -> None:
    assert _open(post_webhook, channel, "a").status_code == 200
    # Without channel_id a dialogue is its channel's own (one per channel): never counted.
    for _ in range(3):
        other = ChannelFactory(chat_bot=bot, url=receiver.url)
        assert post_webhook(customer_message(other)).status_code == 200
    # With channel_id naming the channel's own dialogue: the same dialogue, not counted either.
    assert _open(post_webhook, channel, str(channel.pk)).status_code == 200
    assert Dialogue.objects.filter(chat_bot=bot).count() == 5
    assert _counted(bot) == 1


@override_settings(WEBHOOK_MAX_DIALOGUES_PER_BOT=1)
def test_another_bot_is_unaffected(channel: Channel, post_webhook: PostWebhook, receiver: ChannelReceiver) -> None:
    assert _open(post_webhook, channel, "a").status_code == 200
    assert _open(post_webhook, channel, "b").status_code == 409
    other_bot = ChatBotFactory()
    other_channel = ChannelFactory(chat_bot=other_bot, url=receiver.url)
    response = post_webhook(
        customer_message(other_channel, chat_id="b", channel_id=str(other_channel.pk)), secret=other_bot.plain_secret
    )
    assert response.status_code == 200
    assert _counted(other_bot) == 1 and _counted(channel.chat_bot) == 1


@override_settings(WEBHOOK_MAX_DIALOGUES_PER_BOT=0)
def test_zero_means_unlimited_and_still_counts(channel: Channel, post_webhook: PostWebhook) -> None:
    for n in range(5):
        assert _open(post_webhook, channel, f"chat-{n}").status_code == 200
    assert _counted(channel.chat_bot) == 5


@override_settings(WEBHOOK_MAX_DIALOGUES_PER_BOT=3)
def test_concurrent_new_chats_at_the_limit_pass_exactly_up_to_it(bot: ChatBot, channel: Channel) -> None:
    _counted_before = _counted(bot)
    assert _counted_before == 0
    threads_n = 10
    barrier = threading.Barrier(threads_n)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def run(n: int) -> None:
        from django.db import connection

        try:
            barrier.wait()
            body = customer_message(channel, chat_id=f"chat-{n}", channel_id=str(channel.pk))
            response = APIClient().post(
                WEBHOOK_URL, body, format="json", headers={"x-chatbot_auth_token": f"Bearer {bot.plain_secret}"}
            )
            statuses.append(response.status_code)
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(statuses) == [200] * 3 + [409] * 7
    assert Dialogue.objects.filter(chat_bot=bot).count() == 3
    assert Message.objects.filter(chat_bot=bot).count() == 3
    assert _counted(bot) == 3


@override_settings(WEBHOOK_MAX_DIALOGUES_PER_BOT=5)
def test_concurrent_first_messages_of_one_chat_count_it_once(bot: ChatBot, channel: Channel) -> None:
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def run(n: int) -> None:
        from django.db import connection

        try:
            barrier.wait()
            body = customer_message(channel, chat_id="same", channel_id=str(channel.pk), message_id=f"m-{n}")
            response = APIClient().post(
                WEBHOOK_URL, body, format="json", headers={"x-chatbot_auth_token": f"Bearer {bot.plain_secret}"}
            )
            statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == [200] * 8
    assert Dialogue.objects.filter(chat_bot=bot).count() == 1
    # The creations that lost the race gave their place back.
    assert _counted(bot) == 1


@override_settings(WEBHOOK_MAX_DIALOGUES_PER_BOT=2)
def test_recount_frees_the_places_of_deleted_channels(
    bot: ChatBot, channel: Channel, post_webhook: PostWebhook, receiver: ChannelReceiver
) -> None:
    doomed = ChannelFactory(chat_bot=bot, url=receiver.url)
    assert _open(post_webhook, doomed, "a").status_code == 200
    assert _open(post_webhook, channel, "b").status_code == 200
    doomed.delete()
    # The deleted channel's dialogue is still counted until the recount.
    assert _open(post_webhook, channel, "c").status_code == 409
    call_command("dialogue_counters_recount", stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert _counted(bot) == 1
    assert _open(post_webhook, channel, "c").status_code == 200
    assert _counted(bot) == 2


def test_the_webhook_schema_documents_the_limit() -> None:
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    conflict = schema["paths"]["/api/webhook/new_message"]["post"]["responses"]["409"]
    assert "WEBHOOK_MAX_DIALOGUES_PER_BOT" in conflict["description"]
    examples = conflict["content"]["application/json"]["examples"].values()
    assert "Dialogue limit reached" in {example["summary"] for example in examples}


@override_settings(WEBHOOK_MAX_DIALOGUES_PER_BOT=5)
def test_the_first_dialogues_of_a_bot_at_the_same_moment_are_not_refused(bot: ChatBot) -> None:
    """The bug: of two first dialogues of a bot counted at once, the one whose upsert's insert
    collided with the other's was refused as if the limit were reached (a 409 under load)."""
    from dialogues.store.counters import dialogue_counter_take

    counters_collection().delete_one({"_id": bot.pk})
    original = counters_collection
    calls = {"n": 0}

    class Collided:
        """The counters' collection whose first upsert collides with a concurrent insert."""

        def __init__(self, collection: Any) -> None:
            self.collection = collection

        def update_one(self, match: Any, update: Any, upsert: bool = False) -> Any:
            calls["n"] += 1
            if upsert and calls["n"] == 1:
                self.collection.update_one({"_id": bot.pk}, {"$inc": {"dialogues": 1}}, upsert=True)  # the other
                from pymongo.errors import DuplicateKeyError

                raise DuplicateKeyError("E11000 duplicate key error")
            return self.collection.update_one(match, update, upsert=upsert)

    import dialogues.store.counters as counters

    counters.counters_collection = lambda: Collided(original())  # type: ignore[assignment]
    try:
        dialogue_counter_take(chat_bot_id=bot.pk)
    finally:
        counters.counters_collection = original  # type: ignore[assignment]
    assert _counted(bot) == 2
