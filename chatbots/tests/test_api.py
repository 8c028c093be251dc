from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from channels_app.models import Channel
from chatbots.models import ChatBot
from chatbots.services import chatbot_authenticate
from chatbots.tests.factories import ChatBotFactory
from core.tests.factories import api_token_key
from core.tokens import hash_secret
from dialogues.models import Dialogue, Message
from dialogues.tests.factories import MessageFactory

pytestmark = pytest.mark.django_db

MISSING_ID = "0123456789abcdef01234567"
LLM_DEFAULTS = {
    "system_prompt": "",
    "llm_model": "",
    "temperature": None,
    "max_output_tokens": None,
    "context_messages": None,
    "fallback_text": "",
    "vision": False,
}
LLM_SETTINGS = {
    "system_prompt": "You are the shop's assistant.\nBe brief.",
    "llm_model": "llama3.2",
    "temperature": 0.4,
    "max_output_tokens": 300,
    "context_messages": 12,
    "fallback_text": "Sorry, we will get back to you.",
    "vision": True,
}


def test_create_returns_the_secret_once(api_client: APIClient) -> None:
    response = api_client.post("/api/chatbots/", {"name": "Support"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "name", "secret_prefix", "created_at", "updated_at", "secret_token", *LLM_DEFAULTS,
                         "pause_after_employee_minutes", "pause_after_operator_reply_minutes",
                         "handoff_keywords", "handoff_tool", "handoff_text",
                         "require_signed_webhooks", "webhook_signing_secret", "llm_provider_id",
                         "reply_policy", "burst_quiet_ms", "burst_max_wait_ms"}  # fmt: skip
    bot = ChatBot.objects.get(pk=body["id"])
    assert bot.name == "Support"
    assert bot.secret_hash == hash_secret(body["secret_token"])
    assert body["secret_token"].startswith(body["secret_prefix"])

    read = api_client.get(f"/api/chatbots/{body['id']}").json()
    assert "secret_token" not in read and body["secret_token"] not in str(read)
    assert read["secret_prefix"] == body["secret_prefix"]
    listed = api_client.get("/api/chatbots/").json()
    assert body["secret_token"] not in str(listed)


def test_list_is_a_plain_array_newest_first(api_client: APIClient) -> None:
    first, second = ChatBotFactory(), ChatBotFactory()
    response = api_client.get("/api/chatbots/")
    assert response.status_code == 200
    assert [bot["id"] for bot in response.json()] == [str(second.pk), str(first.pk)]


def test_limit_and_offset_switch_to_an_envelope(api_client: APIClient) -> None:
    bots = [ChatBotFactory() for _ in range(3)]
    body = api_client.get("/api/chatbots/?limit=2&offset=1").json()
    assert body["count"] == 3
    assert [bot["id"] for bot in body["results"]] == [str(bots[1].pk), str(bots[0].pk)]
    assert body["previous"] is not None and body["next"] is None


@pytest.mark.parametrize("query", ["limit=abc", "limit=0", "limit=100000", "offset=-1", "offset=x"])
def test_bad_page_parameters_are_400(api_client: APIClient, query: str) -> None:
    response = api_client.get(f"/api/chatbots/?{query}")
    assert response.status_code == 400
    assert query.split("=")[0] in response.json()


@pytest.mark.parametrize("path", ["/api/chatbots/{id}", "/api/chatbots/{id}/"])
def test_retrieve_with_or_without_slash(api_client: APIClient, path: str) -> None:
    bot = ChatBotFactory(name="Sales")
    response = api_client.get(path.format(id=bot.pk))
    assert response.status_code == 200
    assert response.json()["name"] == "Sales"


@pytest.mark.parametrize("bad_id", ["nope", MISSING_ID, "0123456789abcdef0123456z", "1" * 25, "%00"])
@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_malformed_or_unknown_id_is_404(api_client: APIClient, bad_id: str, method: str) -> None:
    response = getattr(api_client, method)(f"/api/chatbots/{bad_id}", {"name": "x"}, format="json")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_rotate_token_of_unknown_bot_is_404(api_client: APIClient) -> None:
    assert api_client.post(f"/api/chatbots/{MISSING_ID}/rotate_token").status_code == 404
    assert api_client.post("/api/chatbots/bad/rotate_token").status_code == 404


def test_put_and_patch_rename(api_client: APIClient) -> None:
    bot = ChatBotFactory(name="Old")
    response = api_client.put(f"/api/chatbots/{bot.pk}", {"name": "New"}, format="json")
    assert response.status_code == 200 and response.json()["name"] == "New"
    response = api_client.patch(f"/api/chatbots/{bot.pk}/", {"name": "Newer"}, format="json")
    assert response.status_code == 200 and response.json()["name"] == "Newer"
    assert ChatBot.objects.get(pk=bot.pk).name == "Newer"
    assert "secret_token" not in response.json()


@pytest.mark.parametrize(
    "body", [{}, {"name": ""}, {"name": "   "}, {"name": "x" * 201}, {"name": None}, ["x"], {"name": "a\nb"}]
)
def test_bad_names_are_400(api_client: APIClient, body: object) -> None:
    response = api_client.post("/api/chatbots/", body, format="json")
    assert response.status_code == 400
    assert set(response.json()) & {"name", "non_field_errors"}
    bot = ChatBotFactory()
    assert api_client.put(f"/api/chatbots/{bot.pk}", body, format="json").status_code == 400
    assert ChatBot.objects.count() == 1


def test_a_name_another_bot_has_is_409_in_any_case(api_client: APIClient) -> None:
    shop = ChatBotFactory(name="Shop")
    response = api_client.post("/api/chatbots/", {"name": "shop"}, format="json")
    assert response.status_code == 409
    assert response.json() == {"detail": "Another bot is already called “shop”: choose a name that tells them apart."}
    assert ChatBot.objects.count() == 1
    other = ChatBotFactory(name="Other")
    for method in (api_client.put, api_client.patch):
        response = method(f"/api/chatbots/{other.pk}", {"name": "SHOP"}, format="json")
        assert response.status_code == 409 and "already called" in response.json()["detail"]
    assert ChatBot.objects.get(pk=other.pk).name == "Other"
    # A bot keeps its own name, in another case too.
    assert api_client.patch(f"/api/chatbots/{shop.pk}", {"name": "SHOP"}, format="json").status_code == 200


def test_malformed_json_is_400(api_client: APIClient) -> None:
    response = api_client.post("/api/chatbots/", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert "detail" in response.json()


def test_rotate_token_replaces_the_secret(api_client: APIClient) -> None:
    bot = ChatBotFactory()
    old_secret = bot.plain_secret
    response = api_client.post(f"/api/chatbots/{bot.pk}/rotate_token")
    assert response.status_code == 200
    new_secret = response.json()["secret_token"]
    assert new_secret != old_secret
    assert chatbot_authenticate(secret=old_secret) is None
    assert chatbot_authenticate(secret=new_secret) == bot
    assert response.json()["secret_prefix"] == new_secret[:10]


def test_delete_cascades_to_channels_dialogues_and_messages(api_client: APIClient) -> None:
    message = MessageFactory()
    bot = message.chat_bot
    other = MessageFactory()
    response = api_client.delete(f"/api/chatbots/{bot.pk}")
    assert response.status_code == 204
    assert not ChatBot.objects.filter(pk=bot.pk).exists()
    assert not Channel.objects.filter(chat_bot=bot.pk).exists()
    assert not Dialogue.objects.filter(chat_bot=bot.pk).exists()
    assert not Message.objects.filter(chat_bot=bot.pk).exists()
    assert Message.objects.filter(pk=other.pk).exists()
    assert api_client.get(f"/api/chatbots/{bot.pk}").status_code == 404


def test_anonymous_is_401_json(anon_client: APIClient) -> None:
    bot = ChatBotFactory()
    for method, path in [
        ("get", "/api/chatbots/"),
        ("post", "/api/chatbots/"),
        ("get", f"/api/chatbots/{bot.pk}"),
        ("delete", f"/api/chatbots/{bot.pk}"),
        ("post", f"/api/chatbots/{bot.pk}/rotate_token"),
    ]:
        response = getattr(anon_client, method)(path)
        assert response.status_code == 401, (method, path)
        assert response.json() == {"detail": "Authentication credentials were not provided."}
        assert response["WWW-Authenticate"] == "Token"
    assert ChatBot.objects.count() == 1


def test_bad_token_is_401(anon_client: APIClient) -> None:
    anon_client.credentials(HTTP_AUTHORIZATION="Token not-a-real-key")
    response = anon_client.get("/api/chatbots/")
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid token."}


def test_non_staff_user_is_403(anon_client: APIClient) -> None:
    user = get_user_model().objects.create_user(username="member", password="member-pass-123")
    anon_client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_key(user)}")
    assert anon_client.get("/api/chatbots/").status_code == 403
    assert anon_client.post("/api/chatbots/", {"name": "x"}, format="json").status_code == 403
    assert ChatBot.objects.count() == 0


def test_session_login_works_for_staff(staff_user) -> None:  # type: ignore[no-untyped-def]
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username="operator", password="operator-pass-123")
    response = client.get("/api/chatbots/", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert b"Chat Bot List" in response.content or b"<html" in response.content
    # Session writes need the CSRF token, as the browsable API sends it.
    assert client.post("/api/chatbots/", {"name": "x"}, format="json").status_code == 403


# --- the LLM settings ---------------------------------------------------------------


def _llm_settings(bot: ChatBot) -> dict[str, object]:
    bot.refresh_from_db()
    return {name: getattr(bot, name) for name in LLM_DEFAULTS}


def test_llm_settings_are_read_with_their_defaults(api_client: APIClient) -> None:
    bot = ChatBotFactory()
    body = api_client.get(f"/api/chatbots/{bot.pk}").json()
    assert {name: body[name] for name in LLM_DEFAULTS} == LLM_DEFAULTS
    listed = api_client.get("/api/chatbots/").json()[0]
    assert {name: listed[name] for name in LLM_DEFAULTS} == LLM_DEFAULTS


def test_llm_settings_are_read_as_stored(api_client: APIClient) -> None:
    bot = ChatBotFactory(**LLM_SETTINGS)
    body = api_client.get(f"/api/chatbots/{bot.pk}").json()
    assert {name: body[name] for name in LLM_SETTINGS} == LLM_SETTINGS


def test_llm_settings_are_written_on_create(api_client: APIClient) -> None:
    response = api_client.post("/api/chatbots/", {"name": "Shop", **LLM_SETTINGS}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert {name: body[name] for name in LLM_SETTINGS} == LLM_SETTINGS
    assert _llm_settings(ChatBot.objects.get(pk=body["id"])) == LLM_SETTINGS


def test_llm_settings_are_written_by_put_and_patch(api_client: APIClient) -> None:
    bot = ChatBotFactory(name="Shop")
    response = api_client.put(f"/api/chatbots/{bot.pk}", {"name": "Shop", **LLM_SETTINGS}, format="json")
    assert response.status_code == 200
    assert {name: response.json()[name] for name in LLM_SETTINGS} == LLM_SETTINGS
    assert _llm_settings(bot) == LLM_SETTINGS

    response = api_client.patch(f"/api/chatbots/{bot.pk}", {"temperature": 1.5}, format="json")
    assert response.status_code == 200 and response.json()["temperature"] == 1.5
    assert _llm_settings(bot) == {**LLM_SETTINGS, "temperature": 1.5}
    assert bot.name == "Shop"


def test_a_rename_keeps_the_llm_settings(api_client: APIClient) -> None:
    """Existing clients PUT `{"name"}` only: that must not reset the bot's LLM settings."""
    bot = ChatBotFactory(name="Old", **LLM_SETTINGS)
    assert api_client.put(f"/api/chatbots/{bot.pk}", {"name": "New"}, format="json").status_code == 200
    assert api_client.patch(f"/api/chatbots/{bot.pk}", {"name": "Newer"}, format="json").status_code == 200
    assert _llm_settings(bot) == LLM_SETTINGS and bot.name == "Newer"


def test_llm_settings_go_back_to_the_defaults_with_blank_and_null(api_client: APIClient) -> None:
    bot = ChatBotFactory(**LLM_SETTINGS)
    response = api_client.patch(f"/api/chatbots/{bot.pk}", LLM_DEFAULTS, format="json")
    assert response.status_code == 200
    assert _llm_settings(bot) == LLM_DEFAULTS


@pytest.mark.parametrize("temperature", [0, 2, 0.0, 2.0, 1.25])
def test_temperature_bounds_are_inclusive(api_client: APIClient, temperature: float) -> None:
    bot = ChatBotFactory()
    response = api_client.patch(f"/api/chatbots/{bot.pk}", {"temperature": temperature}, format="json")
    assert response.status_code == 200
    assert _llm_settings(bot)["temperature"] == temperature


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", -0.1),
        ("temperature", 2.01),
        ("temperature", "hot"),
        ("temperature", "nan"),
        ("temperature", "Infinity"),
        ("temperature", [1]),
        ("max_output_tokens", 0),
        ("max_output_tokens", -5),
        ("max_output_tokens", 1.5),
        ("max_output_tokens", "many"),
        ("max_output_tokens", 10**7),
        ("context_messages", 0),
        ("context_messages", 1001),
        ("context_messages", "all"),
        ("llm_model", "gpt\n4"),
        ("llm_model", "m" * 201),
        ("llm_model", None),
        ("system_prompt", "p" * 20_001),
        ("system_prompt", None),
        ("system_prompt", {"text": "x"}),
        ("fallback_text", "f" * 4_001),
        ("fallback_text", None),
        ("vision", "true"),
        ("vision", 1),
        ("vision", None),
    ],
)
def test_invalid_llm_settings_are_400_naming_the_field(api_client: APIClient, field: str, value: object) -> None:
    bot = ChatBotFactory(name="Shop", **LLM_SETTINGS)
    for method, path, body in [
        ("post", "/api/chatbots/", {"name": "New", field: value}),
        ("put", f"/api/chatbots/{bot.pk}", {"name": "Shop", field: value}),
        ("patch", f"/api/chatbots/{bot.pk}", {field: value}),
    ]:
        response = getattr(api_client, method)(path, body, format="json")
        assert response.status_code == 400, (method, response.content)
        assert set(response.json()) == {field}, (method, response.json())
    assert ChatBot.objects.count() == 1
    assert _llm_settings(bot) == LLM_SETTINGS


def test_the_schema_documents_the_llm_settings(api_client: APIClient) -> None:
    schema = api_client.get("/api/schema/?format=json").json()
    components = schema["components"]["schemas"]
    for name in ("ChatBot", "ChatBotInputRequest"):
        assert set(LLM_DEFAULTS) <= set(components[name]["properties"]), name
    temperature = components["ChatBotInputRequest"]["properties"]["temperature"]
    assert temperature["minimum"] == 0 and temperature["maximum"] == 2
    assert components["ChatBotInputRequest"]["properties"]["context_messages"]["maximum"] == 1000


def test_the_reply_policy_is_set_through_the_api(api_client: APIClient) -> None:
    created = api_client.post("/api/chatbots/", {"name": "Bursty"}, format="json")
    assert created.status_code == 201
    body = created.json()
    assert (body["reply_policy"], body["burst_quiet_ms"], body["burst_max_wait_ms"]) == ("each", 1500, 8000)
    url = f"/api/chatbots/{body['id']}/"
    set_burst = api_client.patch(url, {"reply_policy": "burst", "burst_quiet_ms": 800}, format="json")
    assert set_burst.status_code == 200 and set_burst.json()["reply_policy"] == "burst"
    # Below the quiet time: every burst is answered this long after its first message.
    fixed = api_client.patch(url, {"burst_max_wait_ms": 500}, format="json")
    assert fixed.status_code == 200 and fixed.json()["burst_max_wait_ms"] == 500
    for bad in ({"reply_policy": "sometimes"}, {"burst_quiet_ms": 50}, {"burst_max_wait_ms": "8000"}):
        response = api_client.patch(url, bad, format="json")
        assert response.status_code == 400, bad
        assert set(response.json()) == set(bad)
