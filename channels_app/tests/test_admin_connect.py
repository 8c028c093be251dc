"""The channel's page tells an integrator how to connect, and tests or rotates the channel
with a button; the list shows each channel's id (its `chat_id`) and its bot by name."""

from __future__ import annotations

import html

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.test import Client, override_settings
from django.urls import reverse

from channels_app.models import Channel
from channels_app.tests.factories import ChannelFactory
from chatbots.tests.factories import ChatBotFactory
from core.mongo import mongo_collection

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client: Client, staff_user) -> Client:  # type: ignore[no-untyped-def]
    client.force_login(staff_user)
    return client


def change_url(channel: Channel) -> str:
    return reverse("admin:channels_app_channel_change", args=[channel.pk])


def test_connect_panel_names_the_webhook_chat_id_header_and_where_replies_go(admin_client: Client) -> None:
    bot = ChatBotFactory(name="Support")
    channel = ChannelFactory(chat_bot=bot, url="https://crm.example.com/replies")
    response = admin_client.get(change_url(channel), HTTP_HOST="bots.example.com")
    assert response.status_code == 200
    page = html.unescape(response.content.decode())
    assert 'id="connect-panel"' in page
    connect = response.context["connect"]
    # Absolute, from the request: what the channel must call.
    assert connect["webhook_url"] == "http://bots.example.com/api/webhook/new_message"
    assert f'id="connect-chat-id" readonly value="{channel.pk}"' in page
    assert 'data-copy-target="connect-chat-id"' in page
    assert "x-chatbot_auth_token: Bearer <bot secret>" in page
    assert f"{bot.secret_prefix}" in page
    assert reverse("admin:chatbots_chatbot_rotate_secret", args=[bot.pk]) in page
    # The curl example is docs/channels.md's, with this channel's id.
    curl = connect["curl"]
    assert curl.startswith("curl -X POST http://bots.example.com/api/webhook/new_message")
    assert "-H 'x-chatbot_auth_token: Bearer <bot secret>'" in curl
    assert f'"chat_id": "{channel.pk}"' in curl
    assert '"message_sender": "customer"' in curl
    assert curl in page
    # Replies: the channel's URL, with the outbound header dispatch.py sends.
    assert 'id="connect-reply-url">https://crm.example.com/replies<' in page
    assert f"{settings.CHANNEL_AUTH_HEADER}: Bearer <channel token>" in page
    assert "webhook-id" in page
    # The copy script is the app's own static file, not a CDN's.
    assert "/static/channels_app/connect.js" in page
    assert admin_client.get("/static/channels_app/connect.js").status_code == 200


@override_settings(CHANNEL_ATTEMPT_TIMEOUT_S=7.5, DELIVERY_MAX_ATTEMPTS=4)
def test_connect_panel_says_what_the_channel_receives_and_what_to_answer(admin_client: Client) -> None:
    channel = ChannelFactory()
    response = admin_client.get(change_url(channel))
    page = html.unescape(response.content.decode())
    part = page.split('id="connect-receives"', 1)[1].split("</ul>", 1)[0]
    # Every role a channel gets, and the test message's mark.
    assert '"role": "ASSISTANT"' in part and '"role": "EMPLOYEE"' in part and '"test": true' in part
    # What to answer, in this deployment's numbers.
    assert "Answer 2xx within 7.5 s" in part and "after 4 attempts the reply is dead" in part
    assert "Retry-After" in part
    assert "<code>channel_id</code>" in part and "<code>chat_id</code>" in part
    assert "docs/channels.md" in part and f'href="{reverse("swagger-ui")}"' in part


def test_the_curl_example_is_what_the_webhook_accepts(admin_client: Client) -> None:
    """The panel's example, sent as it says (with the real secret), is answered 200."""
    import shlex

    bot = ChatBotFactory()
    channel = ChannelFactory(chat_bot=bot)
    curl = admin_client.get(change_url(channel)).context["connect"]["curl"]
    words = shlex.split(curl.replace("\\\n", " "))
    header = words[words.index("-H") + 1].replace("<bot secret>", bot.plain_secret)
    name, value = header.split(": ", 1)
    body = words[words.index("-d") + 1]
    response = Client().post(
        "/api/webhook/new_message",
        data=body,
        content_type="application/json",
        headers={name: value},
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "Message processed successfully"


def test_add_page_has_no_connect_panel(admin_client: Client) -> None:
    page = admin_client.get(reverse("admin:channels_app_channel_add")).content.decode()
    assert 'id="connect-panel"' not in page


def test_send_test_button_hands_the_test_to_the_worker(admin_client: Client) -> None:
    channel = ChannelFactory()
    url = reverse("admin:channels_app_channel_send_test", args=[channel.pk])
    assert url in admin_client.get(change_url(channel)).content.decode()
    assert admin_client.get(url).status_code == 405  # a GET changes nothing
    response = admin_client.post(url)
    assert response.status_code == 302
    assert response["Location"] == change_url(channel)
    # Asked of the worker (a field only it reads); nothing was sent by this request.
    document = mongo_collection(Channel._meta.db_table).find_one({"_id": channel.pk})
    assert document is not None and document["test_requested_at"] is not None
    assert Channel.objects.get(pk=channel.pk).last_test_at is None


def test_rotate_token_button_changes_the_token(admin_client: Client) -> None:
    channel = ChannelFactory()
    old = channel.settings.token
    url = reverse("admin:channels_app_channel_rotate_token", args=[channel.pk])
    assert admin_client.get(url).status_code == 405
    assert Channel.objects.get(pk=channel.pk).settings.token == old
    response = admin_client.post(url, follow=True)
    assert response.status_code == 200
    new = Channel.objects.get(pk=channel.pk).settings.token
    assert new != old
    page = response.content.decode()
    assert new in page  # on the change page, for copying
    assert old not in page


def test_list_shows_the_chat_id_and_the_bot_by_name(admin_client: Client) -> None:
    bot = ChatBotFactory(name="Named bot")
    channel = ChannelFactory(chat_bot=bot)
    page = admin_client.get(reverse("admin:channels_app_channel_changelist")).content.decode()
    assert f'<code class="chat-id">{channel.pk}</code>' in page
    assert "Named bot" in page
    # Sorting by the bot's name works on MongoDB.
    ordered = admin_client.get(reverse("admin:channels_app_channel_changelist") + "?o=3")
    assert ordered.status_code == 200


def test_the_bot_is_picked_by_name(admin_client: Client) -> None:
    bot = ChatBotFactory(name="Picked by name")
    ChatBotFactory(name="Someone else")
    page = admin_client.get(reverse("admin:channels_app_channel_add")).content.decode()
    assert "admin-autocomplete" in page
    response = admin_client.get(
        reverse("admin:autocomplete"),
        {"term": "picked", "app_label": "channels_app", "model_name": "channel", "field_name": "chat_bot"},
    )
    assert response.status_code == 200
    assert response.json()["results"] == [{"id": str(bot.pk), "text": "Picked by name"}]


def test_the_signing_secret_is_shown_once_after_creation_and_after_a_rotation(admin_client: Client) -> None:
    bot = ChatBotFactory(name="Signing")
    response = admin_client.post(
        reverse("admin:channels_app_channel_add"),
        {"name": "Signed", "chat_bot": str(bot.pk), "url": "https://crm.example.com/in", "is_active": "on"},
    )
    assert response.status_code == 302
    channel = Channel.objects.get(name="Signed")
    assert response["Location"].startswith(change_url(channel) + "?signing_secret=")
    page = admin_client.get(response["Location"])
    assert "no-store" in page["Cache-Control"]
    assert page.context["connect"]["signing_secret"] is not None
    assert f'value="{channel.signing_secret}"' in page.content.decode()
    # A reload (or the back button) shows it no more, and says why.
    again = admin_client.get(response["Location"])
    assert channel.signing_secret not in again.content.decode()
    assert again.context["connect"]["signing_secret_seen"] is True
    # Nor does the page without the one-time key, or the key in another session.
    assert channel.signing_secret not in admin_client.get(change_url(channel)).content.decode()

    # Rotation: a new secret, shown once; the old one still signs for the overlap.
    old = channel.signing_secret
    rotated = admin_client.post(reverse("admin:channels_app_channel_rotate_signing_secret", args=[channel.pk]))
    channel.refresh_from_db()
    assert channel.signing_secret != old and channel.previous_signing_secret == old
    shown = admin_client.get(rotated["Location"]).content.decode()
    assert f'value="{channel.signing_secret}"' in shown and old not in shown
    assert channel.signing_secret not in admin_client.get(rotated["Location"]).content.decode()
    # Only with the change permission, and only by POST.
    assert (
        admin_client.get(reverse("admin:channels_app_channel_rotate_signing_secret", args=[channel.pk])).status_code
        == 405
    )


def test_a_user_who_may_only_view_channels_never_sees_a_token_or_a_secret(client: Client, django_user_model) -> None:  # type: ignore[no-untyped-def]
    viewer = django_user_model.objects.create_user(username="viewer", password="viewer-pass-123", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_channel", "view_chatbot"]))
    client.force_login(viewer)
    channel = ChannelFactory()
    page = client.get(change_url(channel))
    assert page.status_code == 200
    text = page.content.decode()
    assert channel.settings.token not in text and channel.signing_secret not in text
    rotate = reverse("admin:channels_app_channel_rotate_signing_secret", args=[channel.pk])
    assert client.post(rotate).status_code == 403
