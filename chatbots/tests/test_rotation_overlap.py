"""Rotating a bot's secret with an overlap: both secrets work until it ends, then only the new
one; two rotations at the same moment cannot both win."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from channels_app.models import Channel
from channels_app.tests.factories import ChannelFactory
from chatbots.models import ChatBot
from chatbots.services import chatbot_authenticate, chatbot_rotate_secret
from chatbots.tests.factories import ChatBotFactory
from core.caching import lookup_caches_clear
from core.errors import Conflict
from core.tokens import hash_secret

pytestmark = pytest.mark.django_db

WEBHOOK_URL = "/api/webhook/new_message"


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    # The webhook caches bots by secret hash: each test must see what it wrote.
    lookup_caches_clear()
    yield
    lookup_caches_clear()


def _rotate(api_client: APIClient, bot: ChatBot, body: dict[str, object] | None = None) -> str:
    response = api_client.post(f"/api/chatbots/{bot.pk}/rotate_token", body or {}, format="json")
    assert response.status_code == 200, response.content
    return str(response.json()["secret_token"])


def _expire_overlap(bot: ChatBot) -> None:
    ChatBot.objects.filter(pk=bot.pk).update(previous_secret_until=timezone.now() - timedelta(seconds=1))
    lookup_caches_clear()


def test_both_secrets_work_during_the_overlap_and_only_the_new_one_after(api_client: APIClient) -> None:
    bot = ChatBotFactory()
    old = bot.plain_secret
    before = timezone.now()
    response = api_client.post(f"/api/chatbots/{bot.pk}/rotate_token", {"overlap_minutes": 60}, format="json")
    assert response.status_code == 200
    new = response.json()["secret_token"]
    until = response.json()["previous_secret_until"]
    assert until is not None

    assert chatbot_authenticate(secret=old) == bot
    assert chatbot_authenticate(secret=new) == bot
    stored = ChatBot.objects.get(pk=bot.pk)
    assert stored.previous_secret_hash == hash_secret(old)
    assert stored.secret_hash == hash_secret(new)
    assert stored.previous_secret_until is not None
    assert timedelta(minutes=59) < stored.previous_secret_until - before <= timedelta(minutes=61)
    assert "previous_secret_hash" not in response.json()

    _expire_overlap(bot)
    assert chatbot_authenticate(secret=old) is None
    assert chatbot_authenticate(secret=new) == bot


def test_rotation_without_overlap_retires_the_old_secret_at_once(api_client: APIClient) -> None:
    bot = ChatBotFactory()
    old = bot.plain_secret
    new = _rotate(api_client, bot)
    assert chatbot_authenticate(secret=old) is None
    assert chatbot_authenticate(secret=new) == bot
    stored = ChatBot.objects.get(pk=bot.pk)
    assert stored.previous_secret_hash is None
    assert stored.previous_secret_until is None


@override_settings(BOT_SECRET_OVERLAP_S=300)
def test_default_overlap_comes_from_the_setting(api_client: APIClient) -> None:
    bot = ChatBotFactory()
    old = bot.plain_secret
    _rotate(api_client, bot)
    assert chatbot_authenticate(secret=old) == bot
    # An explicit 0 overrides the default.
    bot.refresh_from_db()
    newer = _rotate(api_client, bot, {"overlap_minutes": 0})
    assert chatbot_authenticate(secret=old) is None
    assert chatbot_authenticate(secret=newer) == bot


def test_a_second_rotation_keeps_only_the_secret_it_replaced(api_client: APIClient) -> None:
    bot = ChatBotFactory()
    first = bot.plain_secret
    second = _rotate(api_client, bot, {"overlap_minutes": 60})
    third = _rotate(api_client, bot, {"overlap_minutes": 60})
    assert chatbot_authenticate(secret=first) is None
    assert chatbot_authenticate(secret=second) == bot
    assert chatbot_authenticate(secret=third) == bot


@pytest.mark.parametrize("body", [{"overlap_minutes": -1}, {"overlap_minutes": 43_201}, {"overlap_minutes": "5"}])
def test_invalid_overlap_is_400_and_rotates_nothing(api_client: APIClient, body: dict[str, object]) -> None:
    bot = ChatBotFactory()
    response = api_client.post(f"/api/chatbots/{bot.pk}/rotate_token", body, format="json")
    assert response.status_code == 400
    assert "overlap_minutes" in response.json()
    assert chatbot_authenticate(secret=bot.plain_secret) == bot


def test_two_rotations_at_the_same_moment_one_wins_the_other_conflicts() -> None:
    bot = ChatBotFactory()
    # Both requests read the bot before either wrote.
    first_view = ChatBot.objects.get(pk=bot.pk)
    second_view = ChatBot.objects.get(pk=bot.pk)
    winner = chatbot_rotate_secret(chat_bot=first_view, overlap_s=600)
    with pytest.raises(Conflict):
        chatbot_rotate_secret(chat_bot=second_view, overlap_s=600)
    assert chatbot_authenticate(secret=winner) == bot
    assert chatbot_authenticate(secret=bot.plain_secret) == bot  # the winner's overlap


def test_concurrent_rotation_through_the_api_is_409(api_client: APIClient, monkeypatch: pytest.MonkeyPatch) -> None:
    bot = ChatBotFactory()
    stale = ChatBot.objects.get(pk=bot.pk)
    _rotate(api_client, bot)
    # The second request read the bot before the first one's write landed.
    from chatbots import views

    monkeypatch.setattr(views.ChatBotViewSet, "get_object", lambda self: stale)
    response = api_client.post(f"/api/chatbots/{bot.pk}/rotate_token", {}, format="json")
    assert response.status_code == 409
    assert "detail" in response.json()


def _post_webhook(secret: str, channel: Channel, message_id: str) -> int:
    body = {"message_id": message_id, "chat_id": str(channel.pk), "text": "Hi", "message_sender": "employee"}
    response = APIClient().post(
        WEBHOOK_URL,
        data=json.dumps(body),
        content_type="application/json",
        headers={"x-chatbot_auth_token": f"Bearer {secret}"},
    )
    return response.status_code


def test_webhook_accepts_both_secrets_during_the_overlap_and_only_the_new_one_after(api_client: APIClient) -> None:
    bot = ChatBotFactory()
    channel = ChannelFactory(chat_bot=bot)
    old = bot.plain_secret
    new = _rotate(api_client, bot, {"overlap_minutes": 5})
    lookup_caches_clear()

    assert _post_webhook(old, channel, "m-old") == 200
    assert _post_webhook(new, channel, "m-new") == 200

    _expire_overlap(bot)
    assert _post_webhook(old, channel, "m-old-late") == 401
    assert _post_webhook(new, channel, "m-new-late") == 200


def test_admin_shows_until_when_the_previous_secret_works(admin_client: Client) -> None:
    bot = ChatBotFactory()
    url = reverse("admin:chatbots_chatbot_change", args=[bot.pk])
    assert "only the current secret works" in admin_client.get(url).content.decode()
    chatbot_rotate_secret(chat_bot=bot, overlap_s=3600)
    assert "still works until" in admin_client.get(url).content.decode()
    _expire_overlap(bot)
    assert "only the current secret works" in admin_client.get(url).content.decode()


def test_admin_rotation_that_loses_a_race_says_so_instead_of_failing(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chatbots.admin import bots as bot_admin

    bot = ChatBotFactory()

    def lose(*, chat_bot: ChatBot, overlap_s: float | None = None) -> str:
        raise Conflict("rotated elsewhere")

    monkeypatch.setattr(bot_admin, "chatbot_rotate_secret", lose)
    response = admin_client.post(reverse("admin:chatbots_chatbot_rotate_secret", args=[bot.pk]), follow=True)
    assert response.status_code == 200
    assert "rotated by another request" in response.content.decode()
    assert chatbot_authenticate(secret=bot.plain_secret) == bot
