"""The LLM providers' admin pages: the API key is write-only (never in a page, only replaced),
and "Test connection" calls the provider's real server once and shows latency and answer or
error."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import Client
from django.urls import reverse

from chatbots.tests.factories import ChatBotFactory
from llm.models import LLMProvider
from llm.providers import llm_provider_create
from tests.support.chat_completions import ChatCompletionsServer, ChatReply, error_body

pytestmark = pytest.mark.django_db

KEY = "sk-admin-test-0123456789SECRET"
NEW_KEY = "sk-admin-new-9876543210SECRET"


@pytest.fixture
def server() -> Iterator[ChatCompletionsServer]:
    instance = ChatCompletionsServer().start()
    yield instance
    instance.stop()


def _form(provider: LLMProvider, **changes: str) -> dict[str, str]:
    data = {
        "name": provider.name,
        "base_url": provider.base_url,
        "new_api_key": "",
        "max_concurrent": "",
        "requests_per_minute": "",
        "tokens_per_minute": "",
    }
    data.update(changes)
    return data


def test_the_key_is_never_shown_and_only_replaced(admin_client: Client) -> None:
    response = admin_client.post(
        reverse("admin:llm_llmprovider_add"),
        {"name": "Tenant", "base_url": "https://llm.example.com/v1", "new_api_key": KEY, "max_concurrent": "50"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    provider = LLMProvider.objects.get(name="Tenant")
    assert provider.api_key == KEY and provider.max_concurrent == 50
    change_url = reverse("admin:llm_llmprovider_change", args=[provider.pk])

    for page in (admin_client.get(change_url), admin_client.get(reverse("admin:llm_llmprovider_changelist"))):
        assert page.status_code == 200 and KEY not in page.content.decode()
    assert 'id="test-connection-link"' in admin_client.get(change_url).content.decode()

    # Saved with the key field empty: kept.
    assert admin_client.post(change_url, _form(provider, requests_per_minute="600")).status_code == 302
    provider.refresh_from_db()
    assert (provider.api_key, provider.requests_per_minute) == (KEY, 600)

    # A new key replaces it; "remove" empties it.
    assert admin_client.post(change_url, _form(provider, new_api_key=NEW_KEY)).status_code == 302
    assert LLMProvider.objects.get(pk=provider.pk).api_key == NEW_KEY
    assert admin_client.post(change_url, _form(provider, remove_api_key="on")).status_code == 302
    assert LLMProvider.objects.get(pk=provider.pk).api_key == ""

    # A failed form shows errors, not the key typed.
    bad = admin_client.post(change_url, _form(provider, base_url="ftp://x", new_api_key=KEY))
    assert bad.status_code == 200 and KEY not in bad.content.decode()


def test_a_provider_a_bot_names_cannot_be_deleted_from_the_admin(admin_client: Client) -> None:
    used = llm_provider_create(name="Used", base_url="https://a.example.com/v1", api_key=KEY)
    free = llm_provider_create(name="Free", base_url="https://b.example.com/v1", api_key=KEY)
    ChatBotFactory(llm_provider_id=used.pk)

    assert admin_client.get(reverse("admin:llm_llmprovider_delete", args=[used.pk])).status_code == 403
    changelist = reverse("admin:llm_llmprovider_changelist")
    # A batch holding it is refused as a whole (Django lists what may not be deleted).
    admin_client.post(
        changelist, {"action": "delete_selected", "_selected_action": [str(used.pk), str(free.pk)], "post": "yes"}
    )
    assert LLMProvider.objects.count() == 2
    admin_client.post(changelist, {"action": "delete_selected", "_selected_action": [str(free.pk)], "post": "yes"})
    assert list(LLMProvider.objects.values_list("name", flat=True)) == ["Used"]


def test_test_connection_shows_latency_and_the_answer(admin_client: Client, server: ChatCompletionsServer) -> None:
    provider = llm_provider_create(name="Tenant", base_url=server.base_url, api_key=KEY)
    server.then(ChatReply(text="OK", model="small-model"))
    url = reverse("admin:llm_llmprovider_test_connection", args=[provider.pk])

    assert 'name="model"' in admin_client.get(url).content.decode()
    page = admin_client.post(url, {"model": "small-model"}).content.decode()

    assert 'id="test-reply"' in page and ">OK<" in page and " ms" in page and KEY not in page
    [request] = server.requests
    assert request.bearer == KEY and request.json["model"] == "small-model"


def test_test_connection_shows_the_servers_error_without_the_key(
    admin_client: Client, server: ChatCompletionsServer
) -> None:
    provider = llm_provider_create(name="Tenant", base_url=server.base_url, api_key=KEY)
    server.then(ChatReply(status=401, body=error_body(f"Incorrect API key provided: {KEY}", code="invalid_api_key")))

    page = admin_client.post(
        reverse("admin:llm_llmprovider_test_connection", args=[provider.pk]), {"model": "m"}
    ).content.decode()

    assert 'id="test-error"' in page and "401" in page and KEY not in page


def test_the_bots_page_names_its_provider(admin_client: Client) -> None:
    from chatbots.models import ChatBot
    from chatbots.tests.test_admin import PAUSE_FORM, inline_management_data

    provider = llm_provider_create(name="Tenant's vLLM", base_url="http://10.0.0.5:8000/v1", api_key=KEY)
    bot = ChatBotFactory(name="Shop")
    url = reverse("admin:chatbots_chatbot_change", args=[bot.pk])
    get = admin_client.get(url)
    assert "Tenant&#x27;s vLLM" in get.content.decode() and KEY not in get.content.decode()
    form = {"name": "Shop", **PAUSE_FORM, **inline_management_data(get)}

    assert admin_client.post(url, {**form, "llm_provider": str(provider.pk)}).status_code == 302
    assert ChatBot.objects.get(pk=bot.pk).llm_provider_id == provider.pk
    assert f'value="{provider.pk}" selected' in admin_client.get(url).content.decode()

    assert admin_client.post(url, {**form, "llm_provider": ""}).status_code == 302
    assert ChatBot.objects.get(pk=bot.pk).llm_provider_id is None
