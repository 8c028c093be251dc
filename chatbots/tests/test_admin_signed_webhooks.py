"""The admin side of signed webhooks: the flag is editable, the signing secret shown once (on
creation beside the bot's secret, and by its rotation action), never on the bot's page."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from chatbots.models import ChatBot
from chatbots.tests.factories import ChatBotFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client: Client, staff_user) -> Client:  # type: ignore[no-untyped-def]
    client.force_login(staff_user)
    return client


def test_creating_a_bot_shows_its_signing_secret_once_with_its_secret(admin_client: Client) -> None:
    response = admin_client.post(reverse("admin:chatbots_chatbot_add"), {"name": "Signed bot"})
    bot = ChatBot.objects.get(name="Signed bot")

    first = admin_client.get(response["Location"])
    again = admin_client.get(response["Location"])

    shown = [(str(secret), secret.kind) for _bot, secret in first.context["shown"]]
    assert [kind for _secret, kind in shown] == ["secret", "signing"]
    assert shown[1][0] == bot.webhook_signing_secret and bot.webhook_signing_secret.startswith("whsec_")
    assert 'class="vTextField signing-secret-value"' in first.content.decode()
    assert bot.webhook_signing_secret not in again.content.decode()
    session = admin_client.session
    assert bot.webhook_signing_secret not in json.dumps({k: session[k] for k in session.keys()})
    page = admin_client.get(reverse("admin:chatbots_chatbot_change", args=[bot.pk])).content.decode()
    assert bot.webhook_signing_secret not in page


def test_the_flag_is_edited_on_the_bots_page(admin_client: Client) -> None:
    bot = ChatBotFactory()
    url = reverse("admin:chatbots_chatbot_change", args=[bot.pk])
    form = admin_client.get(url).context["adminform"].form
    data = {name: ("" if value is None else value) for name, value in form.initial.items() if name in form.fields}
    data.update({"name": bot.name, "require_signed_webhooks": "on"})
    data.update({key: "0" for key in ("channels-TOTAL_FORMS", "channels-INITIAL_FORMS")})

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    assert ChatBot.objects.get(pk=bot.pk).require_signed_webhooks is True


def test_the_rotate_action_shows_the_new_signing_secret_once(admin_client: Client) -> None:
    bot = ChatBotFactory()
    old = bot.webhook_signing_secret

    action = admin_client.post(
        reverse("admin:chatbots_chatbot_changelist"),
        {"action": "rotate_webhook_signing_secret", "_selected_action": [str(bot.pk)]},
    )
    page = admin_client.get(action["Location"])

    new = ChatBot.objects.get(pk=bot.pk).webhook_signing_secret
    assert new != old and new.startswith("whsec_")
    assert [(str(secret), secret.kind) for _bot, secret in page.context["shown"]] == [(new, "signing")]
    assert new not in admin_client.get(action["Location"]).content.decode()
