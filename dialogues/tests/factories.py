from __future__ import annotations

import uuid

import factory
from django.utils import timezone

from channels_app.tests.factories import ChannelFactory
from dialogues.models import Dialogue, Message


class DialogueFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Dialogue

    channel = factory.SubFactory(ChannelFactory)
    chat_bot = factory.SelfAttribute("channel.chat_bot")
    chat_id = factory.LazyAttribute(lambda o: str(o.channel.pk))
    last_message_at = factory.LazyFunction(timezone.now)


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    dialogue = factory.SubFactory(DialogueFactory)
    chat_bot = factory.SelfAttribute("dialogue.chat_bot")
    channel = factory.SelfAttribute("dialogue.channel")
    message_id = factory.LazyFunction(lambda: str(uuid.uuid4()))
    role = Message.Role.USER
    text = factory.Sequence(lambda n: f"message {n}")
