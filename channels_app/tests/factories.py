from __future__ import annotations

from typing import Any

import factory

from channels_app.models import Channel
from channels_app.services import channel_create
from chatbots.tests.factories import ChatBotFactory


class ChannelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Channel

    name = factory.Sequence(lambda n: f"Channel {n}")
    chat_bot = factory.SubFactory(ChatBotFactory)
    url = "https://channel.example.com/hook"
    is_active = True
    typing_events = False

    @classmethod
    def _create(cls, model_class: type[Channel], *args: Any, **kwargs: Any) -> Channel:
        return channel_create(
            chat_bot=kwargs["chat_bot"],
            name=kwargs["name"],
            url=kwargs["url"],
            is_active=kwargs["is_active"],
            typing_events=kwargs["typing_events"],
        )
