"""Two inserts of the same key at the same moment: the unique index lets exactly one in."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.db import IntegrityError, connections

from channels_app.tests.factories import ChannelFactory
from chatbots.models import ChatBot
from chatbots.services import chatbot_create
from core.errors import ApplicationError
from dialogues.models import Dialogue, Message
from dialogues.tests.factories import DialogueFactory

RACERS = 8


def race(insert: Callable[[], object]) -> tuple[int, list[BaseException]]:
    barrier = threading.Barrier(RACERS)
    successes: list[object] = []
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            successes.append(insert())
        except BaseException as exc:  # noqa: BLE001 - collected and asserted on below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return len(successes), errors


@pytest.mark.django_db(transaction=True)
def test_racing_first_messages_make_one_dialogue() -> None:
    channel = ChannelFactory()

    def insert() -> Dialogue:
        return Dialogue.objects.create(chat_bot=channel.chat_bot, channel=channel, chat_id=str(channel.pk))

    created, errors = race(insert)
    assert created == 1
    assert len(errors) == RACERS - 1 and all(isinstance(e, IntegrityError) for e in errors)
    assert Dialogue.objects.filter(chat_bot=channel.chat_bot, chat_id=str(channel.pk)).count() == 1


@pytest.mark.django_db(transaction=True)
def test_racing_copies_of_a_message_store_one() -> None:
    dialogue = DialogueFactory()

    def insert() -> Message:
        return Message.objects.create(
            dialogue=dialogue,
            chat_bot_id=dialogue.chat_bot_id,
            channel_id=dialogue.channel_id,
            message_id="same-id",
            role=Message.Role.USER,
            text="hello",
        )

    created, errors = race(insert)
    assert created == 1
    assert len(errors) == RACERS - 1 and all(isinstance(e, IntegrityError) for e in errors)
    assert Message.objects.filter(dialogue=dialogue, message_id="same-id").count() == 1


@pytest.mark.django_db(transaction=True)
def test_same_message_id_in_another_dialogue_is_allowed() -> None:
    first, second = DialogueFactory(), DialogueFactory()
    for dialogue in (first, second):
        Message.objects.create(
            dialogue=dialogue,
            chat_bot_id=dialogue.chat_bot_id,
            channel_id=dialogue.channel_id,
            message_id="m-1",
            role=Message.Role.USER,
            text="hi",
        )
    assert Message.objects.filter(message_id="m-1").count() == 2


@pytest.mark.django_db(transaction=True)
def test_racing_creates_of_one_bot_name_make_one_bot() -> None:
    def insert() -> object:
        return chatbot_create(name="Racing bot")

    created, errors = race(insert)
    assert created == 1
    assert len(errors) == RACERS - 1 and all(isinstance(e, ApplicationError) for e in errors)
    assert ChatBot.objects.filter(name="Racing bot").count() == 1
