"""Creating a Telegram channel (API and admin): the token kept encrypted and never shown, the
webhook registered with Telegram with our secret token and URL."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from channels_app.kinds.telegram import KIND
from channels_app.kinds.telegram.client import ALLOWED_UPDATES
from channels_app.kinds.telegram.kind import WEBHOOK_BASE_MISSING, webhook_register
from channels_app.kinds.telegram.tests.conftest import BOT_TOKEN, WEBHOOK_BASE
from channels_app.kinds.telegram.tests.fake_bot_api import Answer, FakeBotApi
from channels_app.models import Channel
from core.mongo import mongo_collection

pytestmark = pytest.mark.django_db

SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


def test_create_stores_the_token_encrypted_and_registers_the_webhook(create_channel: Any, bot_api: FakeBotApi) -> None:
    response = create_channel()
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["kind"] == "telegram" and body["setup_problem"] == ""
    assert "token" not in body and BOT_TOKEN not in response.content.decode()
    assert body["url"] == bot_api.base_url

    channel = Channel.objects.get(pk=body["id"])
    assert channel.settings.token == BOT_TOKEN
    assert SECRET_TOKEN.match(channel.kind_secret) and len(channel.kind_secret) >= 32
    raw = mongo_collection(Channel._meta.db_table).find_one({"_id": channel.pk})
    assert raw is not None and BOT_TOKEN not in str(raw) and channel.kind_secret not in str(raw)

    [call] = bot_api.calls
    assert (call.token, call.method) == (BOT_TOKEN, "setWebhook")
    assert call.body == {
        "url": f"{WEBHOOK_BASE}/channels/telegram/{channel.pk}/updates",
        "secret_token": channel.kind_secret,
        "allowed_updates": ALLOWED_UPDATES,
        "drop_pending_updates": False,
    }
    assert channel.kind_options["webhook"]["ok"] is True
    assert body["options"]["webhook"]["ok"] is True  # the webhook's state, never a secret


def test_the_token_is_not_shown_on_reads(create_channel: Any, api_client: Any) -> None:
    pk = create_channel().json()["id"]
    answer = api_client.get(f"/api/channels/{pk}")
    assert answer.status_code == 200, answer.content
    assert "token" not in answer.json() and BOT_TOKEN not in answer.content.decode()


@pytest.mark.parametrize(
    "token", ["", "123456789", "abc:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawq", "123:short", "123:" + "a" * 34 + "!"]
)
def test_a_malformed_token_is_400_and_nothing_is_stored(create_channel: Any, bot_api: FakeBotApi, token: str) -> None:
    response = create_channel(bot_token=token)
    assert response.status_code == 400 and "bot_token" in response.json()
    assert not Channel.objects.exists() and bot_api.calls == []


def test_an_invalid_api_base_url_is_400(create_channel: Any) -> None:
    response = create_channel(api_base_url="ftp://example.com")
    assert response.status_code == 400 and "api_base_url" in response.json()
    assert not Channel.objects.exists()


def test_a_failed_set_webhook_is_a_setup_problem_the_channel_kept(create_channel: Any, bot_api: FakeBotApi) -> None:
    bot_api.then("setWebhook", Answer.of("answer_set_webhook_bad_url.json"))
    response = create_channel()
    assert response.status_code == 201
    problem = response.json()["setup_problem"]
    assert "setWebhook failed" in problem and "HTTPS url must be provided" in problem
    assert BOT_TOKEN not in problem
    channel = Channel.objects.get(pk=response.json()["id"])
    assert channel.kind_options["webhook"] == {**channel.kind_options["webhook"], "ok": False, "problem": problem}


def test_an_unreachable_bot_api_is_a_setup_problem(create_channel: Any, bot_api: FakeBotApi) -> None:
    response = create_channel(api_base_url="http://127.0.0.1:9")
    assert response.status_code == 201
    assert "Connection failed" in response.json()["setup_problem"]
    assert BOT_TOKEN not in response.json()["setup_problem"]


def test_without_the_public_base_url_the_webhook_is_not_registered(
    create_channel: Any, bot_api: FakeBotApi, settings: Any
) -> None:
    settings.TELEGRAM_WEBHOOK_BASE_URL = ""
    response = create_channel()
    assert response.status_code == 201 and response.json()["setup_problem"] == WEBHOOK_BASE_MISSING
    assert bot_api.calls == []


def test_registering_again_sends_the_same_secret(channel: Channel, bot_api: FakeBotApi) -> None:
    assert webhook_register(channel) == ""
    [call] = bot_api.of("setWebhook")
    assert call.body["secret_token"] == channel.kind_secret


def test_test_send_asks_get_me(channel: Channel, bot_api: FakeBotApi) -> None:
    assert KIND.test_send(channel=channel, log_context={}).ok
    bot_api.then("getMe", Answer.of("answer_401.json"))
    outcome = KIND.test_send(channel=channel, log_context={})
    assert not outcome.ok and outcome.permanent and outcome.status_code == 401
    assert [c.method for c in bot_api.calls] == ["getMe", "getMe"]


def test_the_admin_adds_a_channel_and_shows_its_webhook(
    client: Client, staff_user: Any, bot: Any, bot_api: FakeBotApi
) -> None:
    client.force_login(staff_user)
    add_url = reverse("admin:channels_app_channel_add") + "?kind=telegram"
    form = {
        "_kind": "telegram",
        "name": "Admin bot",
        "chat_bot": str(bot.pk),
        "is_active": "on",
        "bot_token": BOT_TOKEN,
        "api_base_url": "",
    }
    response = client.post(add_url, form)
    assert response.status_code == 302, response.content.decode()[:3000]
    channel = Channel.objects.get(name="Admin bot")
    assert channel.kind == "telegram" and channel.settings.token == BOT_TOKEN
    assert channel.settings.url == bot_api.base_url and channel.kind_secret
    assert [c.method for c in bot_api.calls] == ["setWebhook"]

    page = client.get(reverse("admin:channels_app_channel_change", args=[channel.pk])).content.decode()
    assert "Registered with Telegram" in page and BOT_TOKEN not in page and channel.kind_secret not in page

    # A change with the token left blank keeps the token and the secret token.
    secret = channel.kind_secret
    change = {**form, "bot_token": "", "name": "Renamed"}
    response = client.post(reverse("admin:channels_app_channel_change", args=[channel.pk]), change)
    assert response.status_code == 302, response.content.decode()[:3000]
    channel.refresh_from_db()
    assert (channel.name, channel.settings.token, channel.kind_secret) == ("Renamed", BOT_TOKEN, secret)
    assert bot_api.of("setWebhook")[-1].body["secret_token"] == secret
