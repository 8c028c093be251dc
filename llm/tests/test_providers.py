"""LLM providers as data: a bot names its provider and is answered by that provider's server,
with its key, through the real worker and real OpenAI-compatible servers (tests/support); bots
naming none keep the platform's default. The key is stored encrypted and never shown."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator

import pytest
from rest_framework.test import APIClient

from channels_app.services import channel_create
from chatbots.models import ChatBot
from chatbots.serializers import UNKNOWN_LLM_PROVIDER
from chatbots.tests.factories import ChatBotFactory
from core.crypto import PREFIX
from core.mongo import mongo_collection
from devtools.receiver import ChannelReceiver
from llm.client import LLMError, llm_reply_generate
from llm.models import LLMProvider
from llm.providers import PROVIDER_MISSING, llm_provider_create
from tests.support.chat_completions import ChatCompletionsServer, ChatReply

KEY_A = "sk-tenant-a-0123456789SECRET"
KEY_B = "sk-tenant-b-9876543210SECRET"


@pytest.fixture
def server_a() -> Iterator[ChatCompletionsServer]:
    server = ChatCompletionsServer().start()
    yield server
    server.stop()


@pytest.fixture
def server_b() -> Iterator[ChatCompletionsServer]:
    server = ChatCompletionsServer().start()
    yield server
    server.stop()


def _raw_key(provider: LLMProvider) -> str:
    document = mongo_collection(LLMProvider._meta.db_table).find_one({"_id": provider.pk})
    assert document is not None
    return str(document["api_key"])


@pytest.mark.django_db
def test_each_bot_is_answered_by_its_providers_server_with_its_key_and_the_rest_by_the_default(
    server_a: ChatCompletionsServer, server_b: ChatCompletionsServer
) -> None:
    a = llm_provider_create(name="A", base_url=server_a.base_url, api_key=KEY_A)
    b = llm_provider_create(name="B", base_url=server_b.base_url, api_key=KEY_B)
    server_a.then(ChatReply(text="from A"))
    server_b.then(ChatReply(text="from B"))
    bot_a = ChatBotFactory(llm_provider_id=a.pk, llm_model="model-a")
    bot_b = ChatBotFactory(llm_provider_id=b.pk)
    default_bot = ChatBotFactory()

    assert llm_reply_generate(chat_bot=bot_a, history=[{"role": "USER", "text": "hi"}]).text == "from A"
    assert llm_reply_generate(chat_bot=bot_b, history=[{"role": "USER", "text": "hi"}]).text == "from B"
    # The default stays the mock (LLM_BACKEND), untouched by the providers.
    assert llm_reply_generate(chat_bot=default_bot, history=[{"role": "USER", "text": "hi"}]).backend == "mock"

    [request_a], [request_b] = server_a.requests, server_b.requests
    assert (request_a.bearer, request_a.json["model"]) == (KEY_A, "model-a")
    assert request_b.bearer == KEY_B
    assert _raw_key(a).startswith(PREFIX) and KEY_A not in _raw_key(a)


@pytest.mark.django_db
def test_the_worker_delivers_the_providers_answer(
    server_a: ChatCompletionsServer,
    receiver: ChannelReceiver,
    drain: Callable[[], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    provider = llm_provider_create(name="A", base_url=server_a.base_url, api_key=KEY_A)
    server_a.then(ChatReply(text="The provider's answer"))
    bot = ChatBotFactory(llm_provider_id=provider.pk)
    channel = channel_create(chat_bot=bot, name="Web", url=receiver.url)
    body = {"message_id": "m-1", "chat_id": str(channel.pk), "text": "Hello", "message_sender": "customer"}
    headers = {"x-chatbot_auth_token": f"Bearer {bot.plain_secret}"}
    assert APIClient().post("/api/webhook/new_message", body, format="json", headers=headers).status_code == 200

    drain()

    [request] = receiver.requests
    assert request.json["text"] == "The provider's answer" and request.json["in_reply_to"] == "m-1"
    assert [r.bearer for r in server_a.requests] == [KEY_A]
    assert KEY_A not in caplog.text


@pytest.mark.django_db
def test_a_providers_key_survives_an_encryption_key_rotation(server_a: ChatCompletionsServer) -> None:
    from cryptography.fernet import Fernet
    from django.conf import settings
    from django.core.management import call_command
    from django.test import override_settings

    from core.caching import lookup_caches_clear

    old_key, new_key = settings.SECRETS_ENCRYPTION_KEYS[0], Fernet.generate_key().decode()
    provider = llm_provider_create(name="A", base_url=server_a.base_url, api_key=KEY_A)
    bot = ChatBotFactory(llm_provider_id=provider.pk)

    with override_settings(SECRETS_ENCRYPTION_KEYS=[new_key, old_key]):
        lookup_caches_clear()
        assert LLMProvider.objects.get(pk=provider.pk).api_key == KEY_A
        call_command("secrets_reencrypt", stdout=io.StringIO())
    with override_settings(SECRETS_ENCRYPTION_KEYS=[new_key]):
        lookup_caches_clear()
        llm_reply_generate(chat_bot=bot, history=[{"role": "USER", "text": "hi"}])
    assert [r.bearer for r in server_a.requests] == [KEY_A]
    assert Fernet(new_key).decrypt(_raw_key(provider)[len(PREFIX) :].encode()).decode() == KEY_A


@pytest.mark.django_db
def test_a_bot_whose_provider_is_gone_fails_finally_and_a_used_provider_cannot_be_deleted(
    api_client: APIClient,
) -> None:
    provider = llm_provider_create(name="A", base_url="https://llm.example.com/v1", api_key=KEY_A)
    bot = ChatBotFactory(llm_provider_id=provider.pk)

    response = api_client.delete(f"/api/llm_providers/{provider.pk}")
    assert response.status_code == 409 and "1 bot(s) use this LLM provider" in response.json()["detail"]

    LLMProvider.objects.filter(pk=provider.pk).delete()  # gone all the same (a raw delete)
    with pytest.raises(LLMError) as caught:
        llm_reply_generate(chat_bot=ChatBot.objects.get(pk=bot.pk), history=[{"role": "USER", "text": "hi"}])
    assert caught.value.message == PROVIDER_MISSING and not caught.value.retryable


@pytest.mark.django_db
def test_the_api_manages_providers_and_never_shows_the_key(
    api_client: APIClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = {"name": "Tenant", "base_url": "https://llm.example.com/v1", "api_key": KEY_A, "max_concurrent": 50}
    created = api_client.post("/api/llm_providers/", body, format="json")
    assert created.status_code == 201, created.content
    provider_id = created.json()["id"]
    assert created.json()["has_api_key"] is True and created.json()["max_concurrent"] == 50
    assert api_client.post("/api/llm_providers/", body, format="json").status_code == 409  # names are unique

    responses = [
        created,
        api_client.get("/api/llm_providers/"),
        api_client.get(f"/api/llm_providers/{provider_id}"),
        # A PUT without the key keeps it.
        api_client.put(
            f"/api/llm_providers/{provider_id}",
            {"name": "Tenant", "base_url": "https://llm2.example.com/v1", "requests_per_minute": 600},
            format="json",
        ),
    ]
    for response in responses:
        assert response.status_code == 200 or response.status_code == 201
        assert KEY_A not in response.content.decode() and '"api_key"' not in response.content.decode()
    provider = LLMProvider.objects.get(pk=provider_id)
    assert (provider.api_key, provider.base_url, provider.requests_per_minute) == (
        KEY_A,
        "https://llm2.example.com/v1",
        600,
    )

    # Replaced, never read back.
    assert api_client.patch(f"/api/llm_providers/{provider_id}", {"api_key": KEY_B}, format="json").status_code == 200
    assert LLMProvider.objects.get(pk=provider_id).api_key == KEY_B
    assert KEY_A not in caplog.text and KEY_B not in caplog.text

    bad = api_client.post("/api/llm_providers/", {"name": "X", "base_url": "ftp://x"}, format="json")
    assert bad.status_code == 400 and "base_url" in bad.json()

    assert api_client.delete(f"/api/llm_providers/{provider_id}").status_code == 204
    assert not LLMProvider.objects.filter(pk=provider_id).exists()


@pytest.mark.django_db
def test_a_bot_names_its_provider_through_the_api(api_client: APIClient) -> None:
    provider = llm_provider_create(name="A", base_url="https://llm.example.com/v1", api_key=KEY_A)
    bot = ChatBotFactory()

    response = api_client.patch(f"/api/chatbots/{bot.pk}", {"llm_provider_id": str(provider.pk)}, format="json")
    assert response.status_code == 200 and response.json()["llm_provider_id"] == str(provider.pk)
    assert ChatBot.objects.get(pk=bot.pk).llm_provider_id == provider.pk

    for unknown in (
        api_client.patch(f"/api/chatbots/{bot.pk}", {"llm_provider_id": "0" * 24}, format="json"),
        api_client.post("/api/chatbots/", {"name": "New", "llm_provider_id": "0" * 24}, format="json"),
    ):
        assert unknown.status_code == 404 and unknown.json() == {"llm_provider_id": [UNKNOWN_LLM_PROVIDER]}
    assert ChatBot.objects.count() == 1

    cleared = api_client.patch(f"/api/chatbots/{bot.pk}", {"llm_provider_id": None}, format="json")
    assert cleared.status_code == 200 and cleared.json()["llm_provider_id"] is None


@pytest.mark.django_db
def test_staff_without_the_model_permissions_cannot_touch_providers(django_user_model) -> None:  # type: ignore[no-untyped-def]
    from core.tests.factories import api_token_key

    user = django_user_model.objects.create_user(username="viewer", password="viewer-pass-123", is_staff=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_key(user)}")
    body = {"name": "Tenant", "base_url": "https://llm.example.com/v1", "api_key": KEY_A}
    assert client.get("/api/llm_providers/").status_code == 403
    assert client.post("/api/llm_providers/", body, format="json").status_code == 403
    assert not LLMProvider.objects.exists()
