from __future__ import annotations

from typing import Any

import factory

from chatbots.models import ChatBot
from chatbots.services import chatbot_create


class ChatBotFactory(factory.django.DjangoModelFactory):
    """Creates bots through the service. The plaintext secret is on `bot.plain_secret`."""

    class Meta:
        model = ChatBot

    name = factory.Sequence(lambda n: f"Bot {n}")

    @classmethod
    def _create(cls, model_class: type[ChatBot], *args: Any, **kwargs: Any) -> ChatBot:
        name = kwargs.pop("name")
        chat_bot, secret = chatbot_create(name=name)
        # Anything else given (the LLM settings) is written as it is: test data, not a service.
        if kwargs:
            ChatBot.objects.filter(pk=chat_bot.pk).update(**kwargs)
            chat_bot.refresh_from_db()
        chat_bot.plain_secret = secret  # type: ignore[attr-defined]
        return chat_bot
