from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from rest_framework.test import APIClient

from channels_app.kinds.telegram.tests.fake_bot_api import FakeBotApi
from channels_app.models import Channel
from chatbots.models import ChatBot
from chatbots.tests.factories import ChatBotFactory
from core.caching import lookup_caches_clear

BOT_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawq"
WEBHOOK_BASE = "https://bots.example.com"


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    lookup_caches_clear()
    yield
    lookup_caches_clear()


@pytest.fixture(scope="session")
def _shared_bot_api() -> Iterator[FakeBotApi]:
    server = FakeBotApi().start()
    yield server
    server.stop()


@pytest.fixture
def bot_api(_shared_bot_api: FakeBotApi, settings: Any) -> FakeBotApi:
    """The fake Bot API, emptied per test, as the platform's TELEGRAM_API_BASE_URL."""
    _shared_bot_api.reset()
    settings.TELEGRAM_API_BASE_URL = _shared_bot_api.base_url
    settings.TELEGRAM_WEBHOOK_BASE_URL = WEBHOOK_BASE
    settings.CHANNEL_ALLOW_PRIVATE_URLS = True
    return _shared_bot_api


@pytest.fixture
def bot() -> ChatBot:
    return ChatBotFactory()


CreateChannel = Callable[..., Any]


@pytest.fixture
def create_channel(api_client: APIClient, bot: ChatBot, bot_api: FakeBotApi) -> CreateChannel:
    """Creates a Telegram channel through the API; returns the answer."""

    def create(**fields: Any) -> Any:
        body = {"name": "Shop bot", "chat_bot_id": str(bot.pk), "bot_token": BOT_TOKEN, **fields}
        return api_client.post("/api/channels/kinds/telegram/", body, format="json")

    return create


@pytest.fixture
def channel(create_channel: CreateChannel, bot_api: FakeBotApi) -> Channel:
    response = create_channel()
    assert response.status_code == 201, response.content
    bot_api.reset()
    return Channel.objects.get(pk=response.json()["id"])
