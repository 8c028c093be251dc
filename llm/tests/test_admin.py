"""The bot's admin page as the llm app extends it: "Try this bot" and the last 30 days."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from chatbots.admin import ChatBotAdmin
from chatbots.models import ChatBot
from chatbots.tests.factories import ChatBotFactory
from dialogues.models import Dialogue, Message
from dialogues.store.usage import usage_rebuild
from dialogues.tests.factories import MessageFactory
from llm.admin import ChatBotLLMAdmin
from llm.client import mock_llm_call
from llm.tests.conftest import API_KEY
from tests.support.chat_completions import ChatCompletionsServer, ChatReply, error_body

pytestmark = pytest.mark.django_db


def _try_url(bot: ChatBot) -> str:
    return reverse("admin:chatbots_chatbot_try", args=[bot.pk])


def test_the_bot_admin_is_the_llm_apps_subclass_of_the_chatbots_one() -> None:
    model_admin = admin.site._registry[ChatBot]
    assert type(model_admin) is ChatBotLLMAdmin
    assert isinstance(model_admin, ChatBotAdmin)


def test_the_change_page_links_to_try_this_bot(admin_client: Client) -> None:
    bot = ChatBotFactory()
    page = admin_client.get(reverse("admin:chatbots_chatbot_change", args=[bot.pk])).content.decode()
    assert f'href="{_try_url(bot)}"' in page
    assert "Try this bot" in page
    # The chatbots app's own button is still there.
    assert reverse("admin:chatbots_chatbot_rotate_secret", args=[bot.pk]) in page


def test_try_shows_the_reply_and_stores_nothing(admin_client: Client) -> None:
    bot = ChatBotFactory()
    get = admin_client.get(_try_url(bot))
    assert get.status_code == 200
    assert 'name="message"' in get.content.decode()

    response = admin_client.post(_try_url(bot), {"message": "Do you ship to Oslo?"})

    assert response.status_code == 200
    page = response.content.decode()
    expected = mock_llm_call([{"role": "USER", "text": "Do you ship to Oslo?"}])
    assert response.context["reply"].text == expected
    assert expected in page
    assert Message.objects.count() == 0 and Dialogue.objects.count() == 0


def test_try_uses_the_bots_saved_settings_against_a_real_server(
    admin_client: Client, llm_server: ChatCompletionsServer
) -> None:
    bot = ChatBotFactory(
        system_prompt="Answer in French.", llm_model="bot-model", temperature=0.2, max_output_tokens=50
    )
    llm_server.then(ChatReply(text="Oui, nous livrons à Oslo.", prompt_tokens=30, completion_tokens=9))

    response = admin_client.post(_try_url(bot), {"message": "Do you ship to Oslo?"})

    (request,) = llm_server.requests
    assert request.json["model"] == "bot-model"
    assert request.json["messages"] == [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Do you ship to Oslo?"},
    ]
    assert request.json["temperature"] == 0.2 and request.json["max_tokens"] == 50
    page = response.content.decode()
    assert "Oui, nous livrons à Oslo." in page
    assert "bot-model" in page and "30 + 9" in page
    assert API_KEY not in page
    assert Message.objects.count() == 0


def test_try_shows_an_llm_error_as_a_clear_message(admin_client: Client, llm_server: ChatCompletionsServer) -> None:
    bot = ChatBotFactory()
    llm_server.then(ChatReply(status=401, body=error_body(f"Incorrect API key provided: {API_KEY}")))
    response = admin_client.post(_try_url(bot), {"message": "hello"})
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="try-error"' in page
    assert "The LLM server refused the API key (401)" in page
    assert "permanent" in page
    assert API_KEY not in page
    assert response.context["reply"] is None


def test_try_with_an_empty_message_is_a_form_error(admin_client: Client, llm_server: ChatCompletionsServer) -> None:
    bot = ChatBotFactory()
    response = admin_client.post(_try_url(bot), {"message": ""})
    assert response.status_code == 200
    assert response.context["form"].errors["message"]
    assert llm_server.requests == []


def test_try_an_unknown_bot_goes_back_to_the_list(admin_client: Client) -> None:
    response = admin_client.get(reverse("admin:chatbots_chatbot_try", args=["0123456789abcdef01234567"]))
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:chatbots_chatbot_changelist")


def test_try_needs_the_change_permission(
    client: Client,
    django_user_model,
    llm_server: ChatCompletionsServer,
) -> None:
    staff = django_user_model.objects.create_user(username="staff", password="staff-pass-123", is_staff=True)
    client.force_login(staff)
    bot = ChatBotFactory()
    assert client.post(_try_url(bot), {"message": "hi"}).status_code == 403
    assert client.get(_try_url(bot)).status_code == 403
    assert llm_server.requests == []


def test_try_needs_a_login(client: Client) -> None:
    bot = ChatBotFactory()
    response = client.post(_try_url(bot), {"message": "hi"})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_the_change_page_shows_the_last_30_days(admin_client: Client) -> None:
    bot = ChatBotFactory()
    now = timezone.now()
    yesterday = now - timedelta(days=1)
    MessageFactory(
        dialogue__channel__chat_bot=bot,
        role=Message.Role.ASSISTANT,
        created_at=now,
        in_reply_to="u-1",
        delivery_state="delivered",
        prompt_tokens=120,
        completion_tokens=30,
    )
    MessageFactory(
        dialogue__channel__chat_bot=bot,
        role=Message.Role.ASSISTANT,
        created_at=yesterday,
        in_reply_to="u-2",
        delivery_state="dead",
        prompt_tokens=10,
        completion_tokens=5,
    )
    MessageFactory(dialogue__channel__chat_bot=bot, role=Message.Role.USER, created_at=yesterday, reply_state="failed")
    MessageFactory(role=Message.Role.ASSISTANT, created_at=now, prompt_tokens=999, completion_tokens=1)  # another bot
    # Written by factories, not by the worker that counts as it goes: recounted from them.
    usage_rebuild(days=30)

    response = admin_client.get(reverse("admin:chatbots_chatbot_change", args=[bot.pk]))

    assert response.status_code == 200
    usage = response.context["llm_usage"]
    assert len(usage) == 30
    assert response.context["llm_usage_totals"] == {"replies": 2, "tokens": 165, "failures": 2}
    page = response.content.decode()
    assert 'id="llm-usage"' in page

    def row(day: datetime) -> tuple[str, ...]:
        found = re.search(
            rf'data-day="{day.astimezone(UTC):%Y-%m-%d}">\s*<td>[^<]*</td>\s*'
            r'<td class="replies">(\d+)</td>\s*<td class="tokens">(\d+)</td>\s*<td class="failures">(\d+)</td>',
            page,
        )
        assert found, day
        return found.groups()

    assert row(now) == ("1", "150", "0")
    assert row(yesterday) == ("1", "15", "2")
    assert row(now - timedelta(days=2)) == ("0", "0", "0")


def test_the_add_page_is_unchanged(admin_client: Client) -> None:
    response = admin_client.get(reverse("admin:chatbots_chatbot_add"))
    assert response.status_code == 200
    assert "llm_usage" not in response.context
    assert "Try this bot" not in response.content.decode()


def test_the_days_of_zeros_are_a_chart_and_a_collapsed_table(admin_client: Client) -> None:
    bot = ChatBotFactory()
    response = admin_client.get(reverse("admin:chatbots_chatbot_change", args=[bot.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert page.count('class="llm-usage-bar"') == 30
    # The 30 rows are in a <details> shown closed: the page's Save is not below them.
    details = re.search(r'<details id="llm-usage-days"( open)?>(.*?)</details>', page, re.S)
    assert details and details.group(1) is None
    assert details.group(2).count('class="llm-usage-day"') == 30
    assert "Total: 0 replies, 0 tokens, 0 failures" in details.group(2)
