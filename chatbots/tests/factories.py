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
        chat_bot, secret = chatbot_create(name=kwargs["name"])
        chat_bot.plain_secret = secret  # type: ignore[attr-defined]
        return chat_bot
