"""Making a VK channel: the API's create and the admin's form."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.test.utils import override_settings
from django.urls import reverse
from rest_framework.test import APIClient

from channels_app.kinds.vk.tests.conftest import ACCESS_TOKEN, SECRET, vk_channel_create
from channels_app.kinds.vk.tests.fake_vk import FakeVk
from channels_app.models import Channel
from chatbots.tests.factories import ChatBotFactory
from core.mongo import mongo_collection

pytestmark = pytest.mark.django_db

URL = "/api/channels/kinds/vk/"


def _body(**changes: Any) -> dict[str, Any]:
    return {
        "name": "Flower shop VK",
        "chat_bot_id": str(ChatBotFactory().pk),
        "group_id": 123456,
        "access_token": ACCESS_TOKEN,
        "confirmation_code": "d8v2ve07",
        **changes,
    }


@override_settings(VK_API_BASE_URL="https://vk-api.example.com/method")
def test_create_generates_the_secret_and_shows_it_once(api_client: APIClient) -> None:
    response = api_client.post(URL, _body(), format="json")
    assert response.status_code == 201, response.content
    data = response.json()
    assert ACCESS_TOKEN not in response.content.decode() and "token" not in data
    channel = Channel.objects.get(pk=data["id"])
    assert channel.kind == "vk" and channel.settings.token == ACCESS_TOKEN
    assert len(data["secret"]) == 32 and channel.kind_secret == data["secret"]
    assert data["callback_url"] == f"http://testserver/channels/vk/{channel.pk}/callback"
    assert data["setup_problem"] == ""
    assert channel.settings.url == "https://vk-api.example.com/method"
    assert channel.kind_options == {"group_id": 123456, "confirmation_code": "d8v2ve07", "api_version": "5.199"}
    # Never again: the channel's reads show neither the key nor the secret.
    shown = api_client.get(f"/api/channels/{channel.pk}/").content.decode()
    assert ACCESS_TOKEN not in shown and data["secret"] not in shown and "d8v2ve07" in shown
    raw = mongo_collection(Channel._meta.db_table).find_one({"_id": channel.pk})
    assert raw is not None and data["secret"] not in str(raw) and ACCESS_TOKEN not in str(raw)


def test_a_given_secret_is_kept_and_not_echoed(api_client: APIClient, fake_vk: FakeVk) -> None:
    body = _body(secret=SECRET, api_version="5.131", api_base_url=fake_vk.base_url)
    response = api_client.post(URL, body, format="json")
    assert response.status_code == 201 and "secret" not in response.json()
    channel = Channel.objects.get(pk=response.json()["id"])
    assert channel.kind_secret == SECRET and channel.settings.url == fake_vk.base_url
    assert channel.kind_options["api_version"] == "5.131"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"group_id": "123456"}, "group_id"),
        ({"group_id": 0}, "group_id"),
        ({"access_token": ""}, "access_token"),
        ({"confirmation_code": "two words"}, "confirmation_code"),
        ({"secret": "with space"}, "secret"),
        ({"api_version": "latest"}, "api_version"),
        ({"api_base_url": "ftp://example.com"}, "api_base_url"),
    ],
)
def test_create_validates(api_client: APIClient, changes: dict[str, Any], field: str) -> None:
    response = api_client.post(URL, _body(**changes), format="json")
    assert response.status_code == 400 and field in response.json()
    assert not Channel.objects.filter(kind="vk").exists()


def test_create_needs_the_permission(anon_client: APIClient) -> None:
    assert anon_client.post(URL, _body(), format="json").status_code in (401, 403)
    assert not Channel.objects.filter(kind="vk").exists()


@pytest.fixture
def admin_client(staff_user: Any) -> Client:
    client = Client()
    client.force_login(staff_user)
    return client


def test_the_admin_adds_a_vk_channel_with_the_secret_it_showed(admin_client: Client) -> None:
    add = reverse("admin:channels_app_channel_add")
    page = admin_client.get(f"{add}?kind=vk")
    assert page.status_code == 200
    shown_secret = page.context["adminform"].form.fields["secret"].initial
    assert shown_secret and shown_secret in page.content.decode()
    bot = ChatBotFactory()
    response = admin_client.post(
        f"{add}?kind=vk",
        {
            "_kind": "vk",
            "name": "VK from admin",
            "chat_bot": str(bot.pk),
            "is_active": "on",
            "group_id": "123456",
            "access_token": ACCESS_TOKEN,
            "confirmation_code": "d8v2ve07",
            "secret": shown_secret,
            "api_version": "5.199",
            "api_base_url": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    channel = Channel.objects.get(kind="vk")
    assert channel.kind_secret == shown_secret and channel.settings.token == ACCESS_TOKEN
    change = admin_client.get(reverse("admin:channels_app_channel_change", args=[channel.pk])).content.decode()
    assert ACCESS_TOKEN not in change and shown_secret not in change
    assert f"/channels/vk/{channel.pk}/callback" in change and "d8v2ve07" in change


def test_the_admin_change_keeps_a_blank_key_and_secret(admin_client: Client) -> None:
    channel = vk_channel_create()
    response = admin_client.post(
        reverse("admin:channels_app_channel_change", args=[channel.pk]),
        {
            "name": "Renamed",
            "is_active": "on",
            "group_id": "123456",
            "access_token": "",
            "confirmation_code": "newcode1",
            "secret": "",
            "api_version": "5.199",
            "api_base_url": "https://api.vk.com/method",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    stored = Channel.objects.get(pk=channel.pk)
    assert (stored.name, stored.settings.token, stored.kind_secret) == ("Renamed", ACCESS_TOKEN, SECRET)
    assert stored.kind_options["confirmation_code"] == "newcode1"
