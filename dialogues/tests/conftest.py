from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from rest_framework.test import APIClient

from channels_app.models import Channel
from channels_app.tests.factories import ChannelFactory
from chatbots.models import ChatBot
from chatbots.tests.factories import ChatBotFactory
from core.caching import lookup_caches_clear
from devtools.receiver import ChannelReceiver

WEBHOOK_URL = "/api/webhook/new_message"


@pytest.fixture(autouse=True)
def _fresh_webhook_caches() -> Iterator[None]:
    # The per-process caches (bots, channels, the dialogue lists' busy hints) would carry
    # objects from one test into the next.
    lookup_caches_clear()
    yield
    lookup_caches_clear()


@pytest.fixture
def bot() -> ChatBot:
    return ChatBotFactory()


@pytest.fixture
def channel(bot: ChatBot, receiver: ChannelReceiver) -> Channel:
    return ChannelFactory(chat_bot=bot, url=receiver.url)


PostWebhook = Callable[..., Any]


@pytest.fixture
def post_webhook(bot: ChatBot) -> PostWebhook:
    """POSTs to the webhook with the bot's secret in the seed header (unless told otherwise)."""

    def post(body: Any, *, secret: str | None = None, headers: dict[str, str] | None = None, raw: bytes | None = None):
        client = APIClient()
        if headers is None:
            headers = {"x-chatbot_auth_token": f"Bearer {secret or bot.plain_secret}"}
        data = raw if raw is not None else json.dumps(body)
        return client.post(WEBHOOK_URL, data=data, content_type="application/json", headers=headers)

    return post


def customer_message(channel: Channel, **fields: Any) -> dict[str, Any]:
    body = {"message_id": "m-1", "chat_id": str(channel.pk), "text": "Hello there", "message_sender": "customer"}
    body.update(fields)
    return body


@pytest.fixture(scope="session")
def _shared_receiver() -> Iterator[ChannelReceiver]:
    server = ChannelReceiver().start()
    yield server
    server.stop()


@pytest.fixture
def receiver(_shared_receiver: ChannelReceiver) -> ChannelReceiver:
    """One receiver for the whole session, emptied per test: stopping a receiver costs its
    server's 0.5 s shutdown poll, which per test would dominate these tests' run time."""
    _shared_receiver.reset()
    return _shared_receiver
