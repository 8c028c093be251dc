from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from channels_app.models import Channel
from chatbots.models import ChatBot
from chatbots.services import chatbot_authenticate
from chatbots.tests.factories import ChatBotFactory
from core.tokens import hash_secret
from dialogues.models import Dialogue, Message
from dialogues.tests.factories import MessageFactory

pytestmark = pytest.mark.django_db

MISSING_ID = "0123456789abcdef01234567"


def test_create_returns_the_secret_once(api_client: APIClient) -> None:
    response = api_client.post("/api/chatbots/", {"name": "Support"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "name", "secret_prefix", "created_at", "updated_at", "secret_token"}
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
    anon_client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
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
