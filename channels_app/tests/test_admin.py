from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from django.db import connections
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from channels_app.models import Channel, DeliveryState
from channels_app.tests.factories import ChannelFactory
from chatbots.tests.factories import ChatBotFactory
from core.db_routing import OPERATORS_DB
from devtools.receiver import ChannelReceiver, Reply

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:channels_app_channel_changelist"


@pytest.fixture
def admin_client(client: Client, staff_user) -> Client:  # type: ignore[no-untyped-def]
    client.force_login(staff_user)
    return client


def run_action(client: Client, action: str, *channels: Channel) -> object:
    return client.post(
        reverse(CHANGELIST), {"action": action, "_selected_action": [str(c.pk) for c in channels]}, follow=True
    )


def shown_messages(response: object) -> list[str]:
    return [str(m) for m in response.context["messages"]]  # type: ignore[attr-defined]


def test_changelist_shows_channels_without_their_tokens(admin_client: Client) -> None:
    channel = ChannelFactory(name="Shop chat", url="https://shop.example.com/hook")
    channel.last_delivery_state = DeliveryState.FAILED
    channel.last_delivery_at = timezone.now()
    channel.save()
    response = admin_client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Shop chat" in page
    assert "https://shop.example.com/hook" in page
    assert channel.chat_bot.name in page
    assert '<td class="field-last_delivery">failed<br><span class="quiet">' in page
    assert channel.settings.token not in page


def test_changelist_costs_the_same_handful_of_queries_whatever_its_length(
    admin_client: Client, django_assert_max_num_queries
) -> None:  # type: ignore[no-untyped-def]
    ChannelFactory()
    with django_assert_max_num_queries(12, connection=connections[OPERATORS_DB]) as few:
        admin_client.get(reverse(CHANGELIST))
    assert len(few.captured_queries) > 0
    bots = ChatBotFactory.create_batch(5)
    for i in range(40):
        ChannelFactory(chat_bot=bots[i % 5])
    with django_assert_max_num_queries(len(few.captured_queries), connection=connections[OPERATORS_DB]):
        response = admin_client.get(reverse(CHANGELIST))
    assert len(response.context["cl"].result_list) == 41


def test_filters_by_bot_active_and_last_delivery_state(admin_client: Client) -> None:
    bot = ChatBotFactory()
    mine = ChannelFactory(chat_bot=bot, name="mine")
    off = ChannelFactory(chat_bot=bot, name="off", is_active=False)
    other = ChannelFactory(name="other")
    Channel.objects.filter(pk=other.pk).update(last_delivery_state=DeliveryState.DEAD)

    def names(query: dict[str, str]) -> set[str]:
        response = admin_client.get(reverse(CHANGELIST), query)
        assert response.status_code == 200
        return {c.name for c in response.context["cl"].result_list}

    assert names({"chat_bot__id__exact": str(bot.pk)}) == {"mine", "off"}
    assert names({"is_active__exact": "0"}) == {"off"}
    assert names({"last_delivery_state": "dead"}) == {"other"}
    assert names({"last_delivery_state": "none"}) == {mine.name, off.name}


def test_search_by_name_url_or_id(admin_client: Client) -> None:
    first = ChannelFactory(name="Alpha", url="https://alpha.example.com/in")
    ChannelFactory(name="Beta", url="https://beta.example.org/in")

    def names(term: str) -> set[str]:
        response = admin_client.get(reverse(CHANGELIST), {"q": term})
        assert response.status_code == 200
        return {c.name for c in response.context["cl"].result_list}

    assert names("alph") == {"Alpha"}
    assert names("example.org") == {"Beta"}
    assert names(str(first.pk)) == {"Alpha"}
    assert names("nothing-like-this") == set()


def test_add_creates_the_channel_through_the_service_with_a_generated_token(admin_client: Client) -> None:
    bot = ChatBotFactory()
    response = admin_client.post(
        reverse("admin:channels_app_channel_add"),
        {"name": "Web widget", "chat_bot": str(bot.pk), "url": "https://widget.example.com/reply", "is_active": "on"},
    )
    assert response.status_code == 302
    channel = Channel.objects.get(name="Web widget")
    assert channel.chat_bot_id == bot.pk
    assert channel.settings.url == "https://widget.example.com/reply"
    assert len(channel.settings.token) >= 40
    assert channel.is_active


@pytest.mark.parametrize("url", ["ftp://example.com/x", "not a url", "https://exa mple.com/"])
def test_add_refuses_a_bad_url_with_a_form_error(admin_client: Client, url: str) -> None:
    bot = ChatBotFactory()
    response = admin_client.post(
        reverse("admin:channels_app_channel_add"), {"name": "Bad", "chat_bot": str(bot.pk), "url": url}
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["url"]
    assert not Channel.objects.exists()


@override_settings(CHANNEL_ALLOW_PRIVATE_URLS=False)
def test_add_refuses_a_private_network_url(admin_client: Client) -> None:
    bot = ChatBotFactory()
    response = admin_client.post(
        reverse("admin:channels_app_channel_add"),
        {"name": "Internal", "chat_bot": str(bot.pk), "url": "http://127.0.0.1:8080/hook"},
    )
    assert response.status_code == 200
    assert "private network" in str(response.context["adminform"].form.errors["url"])
    assert not Channel.objects.exists()


def test_change_page_shows_the_token_for_copying_and_updates_through_the_service(admin_client: Client) -> None:
    channel = ChannelFactory(url="https://old.example.com/hook")
    token = channel.settings.token
    url = reverse("admin:channels_app_channel_change", args=[channel.pk])
    page = admin_client.get(url).content.decode()
    assert token in page
    assert 'data-copy-target="channel-token"' in page
    response = admin_client.post(url, {"name": "Renamed", "url": "https://new.example.com/hook"})
    assert response.status_code == 302
    channel.refresh_from_db()
    assert channel.name == "Renamed"
    assert channel.settings.url == "https://new.example.com/hook"
    assert channel.settings.token == token
    assert channel.is_active is False  # the unticked box, as a browser sends it


def test_typing_events_are_off_by_default_and_switched_on_the_change_page(admin_client: Client) -> None:
    channel = ChannelFactory(url="https://chat.example.com/hook")
    assert channel.typing_events is False
    url = reverse("admin:channels_app_channel_change", args=[channel.pk])
    page = admin_client.get(url).content.decode()
    assert 'name="typing_events"' in page and "must ignore types and fields" in page  # with its help text
    data = {"name": channel.name, "url": channel.settings.url, "is_active": "on", "typing_events": "on"}
    assert admin_client.post(url, data).status_code == 302
    channel.refresh_from_db()
    assert channel.typing_events is True and channel.is_active is True


def test_the_bot_of_a_channel_cannot_be_changed(admin_client: Client) -> None:
    channel = ChannelFactory()
    other = ChatBotFactory()
    url = reverse("admin:channels_app_channel_change", args=[channel.pk])
    admin_client.post(url, {"name": channel.name, "url": channel.settings.url, "chat_bot": str(other.pk)})
    channel.refresh_from_db()
    assert channel.chat_bot_id != other.pk


def test_activate_and_deactivate_actions(admin_client: Client) -> None:
    first, second = ChannelFactory(), ChannelFactory(is_active=False)
    response = run_action(admin_client, "deactivate", first, second)
    assert "2 channels deactivated." in shown_messages(response)
    assert not Channel.objects.filter(is_active=True).exists()
    response = run_action(admin_client, "activate", first)
    assert "1 channel activated." in shown_messages(response)
    assert set(Channel.objects.filter(is_active=True).values_list("pk", flat=True)) == {first.pk}


def test_rotate_token_action_changes_the_token_without_showing_it(
    admin_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    channel = ChannelFactory()
    old = channel.settings.token
    response = run_action(admin_client, "rotate_token", channel)
    channel.refresh_from_db()
    assert channel.settings.token != old
    assert channel.settings.token not in response.content.decode()
    assert "Token rotated for 1 channel" in shown_messages(response)[0]
    assert channel.settings.token not in caplog.text


def test_send_test_message_hands_the_test_to_the_worker_and_shows_the_result(
    admin_client: Client, receiver: ChannelReceiver, drain: Callable[[], None]
) -> None:
    channel = ChannelFactory(url=receiver.url)
    response = run_action(admin_client, "send_test_message", channel)
    [text] = shown_messages(response)
    assert "on its way" in text
    assert receiver.requests == []  # the admin request itself sent nothing
    # Until the worker has its result, the row says so, and the list swaps the result in
    # when it comes (tests/browser/test_admin_browser.py watches it happen).
    page = admin_client.get(reverse("admin:channels_app_channel_changelist")).content.decode()
    assert '<span class="test-pending">a test message is on its way (asked at' in page
    assert "channels_app/test_results.js" in page
    drain()
    [request] = receiver.wait_for(1)
    assert request.json["test"] is True
    assert request.headers["x-chat_auth_token"] == f"Bearer {channel.settings.token}"
    channel.refresh_from_db()
    assert channel.last_test_ok is True and channel.last_test_result.startswith("HTTP 200")
    page = admin_client.get(reverse("admin:channels_app_channel_changelist")).content.decode()
    assert "✓ HTTP 200" in page and "test-pending" not in page
    assert channel.settings.token not in page


def test_send_test_message_reports_a_failure(
    admin_client: Client, receiver: ChannelReceiver, drain: Callable[[], None]
) -> None:
    receiver.default = Reply(status=500)
    channel = ChannelFactory(url=receiver.url)
    run_action(admin_client, "send_test_message", channel)
    drain()
    receiver.wait_for(1)
    channel.refresh_from_db()
    assert channel.last_test_ok is False and "500" in channel.last_test_result
    assert "✗" in admin_client.get(reverse("admin:channels_app_channel_changelist")).content.decode()


def test_delete_removes_the_channel(admin_client: Client) -> None:
    channel = ChannelFactory()
    response = admin_client.post(reverse("admin:channels_app_channel_delete", args=[channel.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not Channel.objects.exists()


def test_the_last_test_result_is_shown_in_the_operators_language(admin_client: Client) -> None:
    ok = ChannelFactory(name="Answers")
    failing = ChannelFactory(name="Down")
    now = timezone.now()
    Channel.objects.filter(pk=ok.pk).update(last_test_at=now, last_test_ok=True, last_test_result="HTTP 200 in 7 ms")
    Channel.objects.filter(pk=failing.pk).update(
        last_test_at=now, last_test_ok=False, last_test_result="Received status code 503"
    )
    page = admin_client.get(
        reverse("admin:channels_app_channel_changelist"), HTTP_ACCEPT_LANGUAGE="ru"
    ).content.decode()
    assert "✓ HTTP 200 за 7 мс" in page
    assert "✗ Получен код ответа 503" in page
    # Stored as they were: translated when shown only.
    assert Channel.objects.get(pk=failing.pk).last_test_result == "Received status code 503"
