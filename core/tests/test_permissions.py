"""The management API applies Django's model permissions to staff users, as the admin does."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client
from rest_framework.test import APIClient

from channels_app.models import Channel
from channels_app.tests.factories import ChannelFactory
from chatbots.models import ChatBot
from chatbots.tests.factories import ChatBotFactory
from core.tests.factories import api_token_key

pytestmark = pytest.mark.django_db


def _user(django_user_model: Any, *codenames: str, is_staff: bool = True, name: str = "staff") -> Any:
    user = django_user_model.objects.create_user(username=name, password="pass-12345-x", is_staff=is_staff)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return django_user_model.objects.get(pk=user.pk)  # no permission cache


def _client(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_key(user)}")
    return client


def test_permissions_carry_their_app_label(django_user_model: Any) -> None:
    """The bug: on the embedded server every permission read as `1.<codename>`."""
    user = _user(django_user_model, "view_chatbot", "add_channel")
    assert user.get_all_permissions() == {"chatbots.view_chatbot", "channels_app.add_channel"}
    assert user.has_perm("chatbots.view_chatbot") and user.has_module_perms("chatbots")
    assert not user.has_perm("chatbots.add_chatbot")


def test_group_permissions_carry_their_app_label(django_user_model: Any) -> None:
    user = _user(django_user_model)
    group = Group.objects.create(name="viewers")
    group.permissions.add(Permission.objects.get(codename="view_channel"))
    user.groups.add(group)
    user = django_user_model.objects.get(pk=user.pk)
    assert user.get_all_permissions() == {"channels_app.view_channel"}


def test_a_staff_user_who_may_only_view_can_read_but_not_write(django_user_model: Any) -> None:
    bot = ChatBotFactory()
    channel = ChannelFactory(chat_bot=bot)
    client = _client(_user(django_user_model, "view_chatbot", "view_channel"))

    assert client.get("/api/chatbots/").status_code == 200
    assert client.get(f"/api/chatbots/{bot.pk}").status_code == 200
    assert client.get("/api/channels/").status_code == 200
    assert client.get(f"/api/channels/{channel.pk}").status_code == 200

    body = {"name": "Web", "chat_bot_id": str(bot.pk), "url": "https://a.example/h"}
    assert client.post("/api/chatbots/", {"name": "New"}, format="json").status_code == 403
    assert client.post("/api/channels/", body, format="json").status_code == 403
    assert client.patch(f"/api/channels/{channel.pk}", {"name": "X"}, format="json").status_code == 403
    assert client.post(f"/api/channels/{channel.pk}/rotate_token").status_code == 403
    assert client.post(f"/api/channels/{channel.pk}/rotate_signing_secret").status_code == 403
    assert client.post(f"/api/chatbots/{bot.pk}/rotate_token").status_code == 403
    assert client.delete(f"/api/chatbots/{bot.pk}").status_code == 403
    assert client.delete(f"/api/channels/{channel.pk}").status_code == 403

    stored = Channel.objects.get(pk=channel.pk)
    assert (stored.name, stored.settings.token, stored.signing_secret) == (
        channel.name,
        channel.settings.token,
        channel.signing_secret,
    )
    assert ChatBot.objects.filter(pk=bot.pk).exists() and Channel.objects.count() == 1


def test_a_staff_user_who_may_add_can_create_and_nothing_more(django_user_model: Any) -> None:
    bot = ChatBotFactory()
    client = _client(_user(django_user_model, "add_channel", "add_chatbot"))
    body = {"name": "Web", "chat_bot_id": str(bot.pk), "url": "https://a.example/h"}

    created = client.post("/api/channels/", body, format="json")
    assert created.status_code == 201
    assert Channel.objects.filter(pk=created.json()["id"]).exists()
    assert client.post("/api/chatbots/", {"name": "New"}, format="json").status_code == 201

    channel_id = created.json()["id"]
    assert client.get("/api/channels/").status_code == 403  # add is not view
    assert client.post(f"/api/channels/{channel_id}/rotate_token").status_code == 403  # nor change


def test_change_and_delete_permissions(django_user_model: Any) -> None:
    channel = ChannelFactory()
    client = _client(_user(django_user_model, "change_channel", "delete_channel"))
    assert client.patch(f"/api/channels/{channel.pk}", {"name": "Renamed"}, format="json").status_code == 200
    assert client.post(f"/api/channels/{channel.pk}/rotate_signing_secret").status_code == 200
    assert Channel.objects.get(pk=channel.pk).name == "Renamed"
    assert client.delete(f"/api/channels/{channel.pk}").status_code == 204
    assert not Channel.objects.filter(pk=channel.pk).exists()


def test_permissions_without_staff_status_are_not_enough(django_user_model: Any) -> None:
    client = _client(_user(django_user_model, "view_channel", is_staff=False))
    assert client.get("/api/channels/").status_code == 403


def test_a_superuser_may_do_everything(api_client: APIClient) -> None:
    channel = ChannelFactory()
    assert api_client.get("/api/channels/").status_code == 200
    assert api_client.post(f"/api/channels/{channel.pk}/rotate_token").status_code == 200
    assert api_client.delete(f"/api/channels/{channel.pk}").status_code == 204


# --- secrets and transcripts by permission --------------------------------------------------


def test_a_channel_token_only_for_those_who_may_change_the_channel(django_user_model: Any) -> None:
    """The bug: view-only staff read every channel's token in the list, the detail and the
    browsable API, which the admin hides from them."""
    channel = ChannelFactory()
    token = channel.settings.token
    viewer = _client(_user(django_user_model, "view_channel", name="viewer"))
    listed = viewer.get("/api/channels/")
    assert listed.status_code == 200
    keys = {"id", "name", "chat_bot_id", "url", "kind", "options", "is_active", "typing_events"}
    assert [set(item) for item in listed.json()] == [keys]
    page = viewer.get("/api/channels/?limit=10").json()
    assert "token" not in page["results"][0]
    detail = viewer.get(f"/api/channels/{channel.pk}")
    assert detail.status_code == 200 and "token" not in detail.json()
    for response in (listed, detail):
        assert token not in response.content.decode()

    editor = _client(_user(django_user_model, "view_channel", "change_channel", name="editor"))
    assert editor.get("/api/channels/").json()[0]["token"] == token
    assert editor.get(f"/api/channels/{channel.pk}").json()["token"] == token
    assert editor.patch(f"/api/channels/{channel.pk}", {"name": "X"}, format="json").json()["token"] == token


def test_the_browsable_api_shows_no_token_to_a_viewer(django_user_model: Any) -> None:
    channel = ChannelFactory()
    token = channel.settings.token
    viewer = Client()
    viewer.force_login(_user(django_user_model, "view_channel", name="viewer"))
    for url in ("/api/channels/", f"/api/channels/{channel.pk}"):
        page = viewer.get(url, HTTP_ACCEPT="text/html")
        assert page.status_code == 200 and "text/html" in page["Content-Type"]
        html = page.content.decode()
        assert channel.name in html and token not in html
    editor = Client()
    editor.force_login(_user(django_user_model, "view_channel", "change_channel", name="editor"))
    assert token in editor.get(f"/api/channels/{channel.pk}", HTTP_ACCEPT="text/html").content.decode()


def test_the_create_answer_shows_its_creator_the_new_token(django_user_model: Any) -> None:
    """Like the signing secret: a secret made by this request is shown to whoever made it."""
    bot = ChatBotFactory()
    client = _client(_user(django_user_model, "add_channel"))
    body = {"name": "Web", "chat_bot_id": str(bot.pk), "url": "https://a.example/h"}
    created = client.post("/api/channels/", body, format="json").json()
    assert created["token"] == Channel.objects.get(pk=created["id"]).settings.token
    assert created["signing_secret"]
