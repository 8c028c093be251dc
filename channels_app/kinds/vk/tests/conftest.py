from __future__ import annotations

from collections.abc import Iterator

import pytest

from channels_app.kinds.vk.serializers import vk_config
from channels_app.kinds.vk.tests.fake_vk import FakeVk
from channels_app.models import Channel
from channels_app.services import channel_create_of_kind
from chatbots.tests.factories import ChatBotFactory

GROUP_ID = 123456
# The fixtures' `secret` (fixtures/callback_*.json).
SECRET = "Kf83hQ2pZx7LmN4v"  # noqa: S105 - a test value
CONFIRMATION_CODE = "d8v2ve07"
ACCESS_TOKEN = "vk1.a.community-key-not-real"  # noqa: S105 - a test value


@pytest.fixture
def fake_vk() -> Iterator[FakeVk]:
    server = FakeVk().start()
    yield server
    server.stop()


def vk_channel_create(*, api_base_url: str = "https://api.vk.com/method") -> Channel:
    return channel_create_of_kind(
        chat_bot=ChatBotFactory(),
        name="VK shop",
        kind="vk",
        config=vk_config(
            group_id=GROUP_ID,
            access_token=ACCESS_TOKEN,
            confirmation_code=CONFIRMATION_CODE,
            secret=SECRET,
            api_version="5.199",
            api_base_url=api_base_url,
        ),
    )


@pytest.fixture
def vk_channel(fake_vk: FakeVk) -> Channel:
    return vk_channel_create(api_base_url=fake_vk.base_url)
