from __future__ import annotations

import logging

import pytest
from django.db import connections
from django.test import Client, override_settings
from django.urls import reverse

from channels_app.models import Channel
from channels_app.tests.factories import ChannelFactory
from chatbots.models import ChatBot
from chatbots.services import chatbot_authenticate
from chatbots.tests.factories import ChatBotFactory
from core.db_routing import OPERATORS_DB
from dialogues.models import Dialogue, Message
from dialogues.tests.factories import DialogueFactory, MessageFactory

pytestmark = pytest.mark.django_db

ADMIN_URLS = [
    "admin:index",
    "admin:chatbots_chatbot_changelist",
    "admin:chatbots_chatbot_add",
    "admin:channels_app_channel_changelist",
    "admin:channels_app_channel_add",
    "admin:dialogues_dialogue_changelist",
    "admin:dialogues_delivery_changelist",
]


@pytest.fixture
def admin_client(client: Client, staff_user) -> Client:  # type: ignore[no-untyped-def]
    client.force_login(staff_user)
    return client


def inline_management_data(response) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """What the browser posts back for the change page's inlines (management forms and ids)."""
    data: dict[str, object] = {}
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        for name, value in formset.management_form.initial.items():
            data[f"{formset.prefix}-{name}"] = value
        for form in formset.forms:
            for field in form.hidden_fields():
                data[form.add_prefix(field.name)] = field.value()
    return data


@pytest.mark.parametrize("name", ADMIN_URLS)
def test_anonymous_user_is_redirected_to_login(client: Client, name: str) -> None:
    url = reverse(name)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_non_staff_user_is_redirected_to_login(client: Client, django_user_model) -> None:  # type: ignore[no-untyped-def]
    user = django_user_model.objects.create_user(username="customer", password="pw-123456789")
    client.force_login(user)
    response = client.get(reverse("admin:chatbots_chatbot_changelist"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_login_page_and_admin_css_are_served(client: Client) -> None:
    response = client.get(reverse("admin:login"))
    assert response.status_code == 200
    assert b"Chat-bot platform" in response.content


def test_index_names_apps_and_models_in_plain_words(admin_client: Client) -> None:
    response = admin_client.get(reverse("admin:index"))
    assert response.status_code == 200
    page = response.content.decode()
    for label in ("Chat-bot platform", "Chat bots", "Channels", "Dialogues", "Deliveries"):
        assert label in page


def test_changelist_shows_prefix_and_channel_count_but_never_the_secret(admin_client: Client) -> None:
    bot = ChatBotFactory(name="Support bot")
    ChannelFactory.create_batch(3, chat_bot=bot)
    ChatBotFactory(name="Idle bot")
    response = admin_client.get(reverse("admin:chatbots_chatbot_changelist"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Support bot" in page and "Idle bot" in page
    assert f"{bot.secret_prefix}…" in page
    assert bot.plain_secret not in page
    assert bot.secret_hash not in page
    assert '<td class="field-channel_count">3</td>' in page
    assert '<td class="field-channel_count">0</td>' in page


def test_changelist_costs_the_same_handful_of_queries_whatever_its_length(
    admin_client: Client, django_assert_max_num_queries
) -> None:  # type: ignore[no-untyped-def]
    url = reverse("admin:chatbots_chatbot_changelist")
    ChatBotFactory()
    with django_assert_max_num_queries(10, connection=connections[OPERATORS_DB]) as few:
        admin_client.get(url)
    assert len(few.captured_queries) > 0  # the backend reports its queries
    for _ in range(40):
        ChannelFactory(chat_bot=ChatBotFactory())
    with django_assert_max_num_queries(len(few.captured_queries), connection=connections[OPERATORS_DB]):
        response = admin_client.get(url)
    assert response.status_code == 200
    assert response.content.decode().count('class="field-channel_count">1<') == 40


def test_add_creates_the_bot_through_the_service_and_shows_the_secret_once(
    admin_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    response = admin_client.post(reverse("admin:chatbots_chatbot_add"), {"name": "Sales bot"}, follow=True)
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    bot = ChatBot.objects.get(name="Sales bot")
    secret = str(response.context["shown"][0][1])
    assert secret.startswith(bot.secret_prefix)
    assert secret in response.content.decode()
    assert "shown only this once" in response.content.decode()
    assert chatbot_authenticate(secret=secret) == bot
    # Never again: not on the change page, the list, or in any log record.
    change = admin_client.get(reverse("admin:chatbots_chatbot_change", args=[bot.pk]))
    assert change.status_code == 200
    assert secret not in change.content.decode()
    assert secret not in admin_client.get(reverse("admin:chatbots_chatbot_changelist")).content.decode()
    # Including tracebacks: the template engine logs its whole context at DEBUG level.
    assert secret not in caplog.text


def test_add_with_a_blank_name_shows_the_form_error(admin_client: Client) -> None:
    response = admin_client.post(reverse("admin:chatbots_chatbot_add"), {"name": ""})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["name"]
    assert ChatBot.objects.count() == 0


def test_change_page_renames_the_bot_and_lists_its_channels(admin_client: Client) -> None:
    bot = ChatBotFactory(name="Old name")
    ChannelFactory(chat_bot=bot, name="Telegram shop", url="https://shop.example.com/hook")
    ChannelFactory(name="Someone else's channel")
    url = reverse("admin:chatbots_chatbot_change", args=[bot.pk])
    get = admin_client.get(url)
    page = get.content.decode()
    assert "Telegram shop" in page
    assert "https://shop.example.com/hook" in page
    assert "Someone else&#x27;s channel" not in page
    assert bot.secret_prefix in page
    response = admin_client.post(url, {"name": "New name", **PAUSE_FORM, **inline_management_data(get)})
    assert response.status_code == 302
    bot.refresh_from_db()
    assert bot.name == "New name"
    assert chatbot_authenticate(secret=bot.plain_secret) == bot  # renaming keeps the secret


def test_rotate_secret_action_shows_each_new_secret_once_and_retires_the_old(admin_client: Client) -> None:
    first, second = ChatBotFactory(), ChatBotFactory()
    response = admin_client.post(
        reverse("admin:chatbots_chatbot_changelist"),
        {"action": "rotate_secret", "_selected_action": [str(first.pk), str(second.pk)]},
        follow=True,
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    shown = {bot.pk: str(secret) for bot, secret in response.context["shown"]}
    assert set(shown) == {first.pk, second.pk}
    for bot in (first, second):
        assert shown[bot.pk] in response.content.decode()
        assert chatbot_authenticate(secret=shown[bot.pk]) == bot
        assert chatbot_authenticate(secret=bot.plain_secret) is None


def test_rotate_secret_button_asks_first_then_rotates(admin_client: Client) -> None:
    bot = ChatBotFactory()
    change = admin_client.get(reverse("admin:chatbots_chatbot_change", args=[bot.pk])).content.decode()
    url = reverse("admin:chatbots_chatbot_rotate_secret", args=[bot.pk])
    assert url in change
    confirm = admin_client.get(url)
    assert confirm.status_code == 200
    assert "stops working at once" in confirm.content.decode()
    assert chatbot_authenticate(secret=bot.plain_secret) == bot  # a GET changes nothing
    response = admin_client.post(url, follow=True)
    assert response.status_code == 200
    secret = str(response.context["shown"][0][1])
    assert chatbot_authenticate(secret=secret) == bot
    assert chatbot_authenticate(secret=bot.plain_secret) is None


def test_delete_confirmation_counts_what_goes_with_the_bot_and_deletes_through_the_service(
    admin_client: Client,
) -> None:
    bot = ChatBotFactory()
    channel = ChannelFactory(chat_bot=bot)
    MessageFactory.create_batch(3, dialogue=DialogueFactory(channel=channel))
    url = reverse("admin:chatbots_chatbot_delete", args=[bot.pk])
    confirm = admin_client.get(url)
    assert confirm.status_code == 200
    assert dict(confirm.context["model_count"])["messages"] == 3
    response = admin_client.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert not ChatBot.objects.filter(pk=bot.pk).exists()
    assert not Channel.objects.filter(chat_bot_id=bot.pk).exists()
    assert not Dialogue.objects.filter(chat_bot_id=bot.pk).exists()
    assert not Message.objects.filter(chat_bot_id=bot.pk).exists()


def test_delete_selected_action_deletes_through_the_service(admin_client: Client) -> None:
    bot = ChatBotFactory()
    ChannelFactory(chat_bot=bot)
    response = admin_client.post(
        reverse("admin:chatbots_chatbot_changelist"),
        {"action": "delete_selected", "_selected_action": [str(bot.pk)], "post": "yes"},
    )
    assert response.status_code == 302
    assert not ChatBot.objects.exists()
    assert not Channel.objects.exists()


@override_settings(LANGUAGE_CODE="ru")
def test_russian_labels_for_our_models_and_actions(admin_client: Client) -> None:
    index = admin_client.get(reverse("admin:index")).content.decode()
    for label in ("Платформа чат-ботов", "Чат-боты", "Каналы", "Диалоги", "Доставки"):
        assert label in index, label
    # A list shows its actions only when it has rows.
    MessageFactory(
        dialogue=DialogueFactory(channel=ChannelFactory()), role="ASSISTANT", in_reply_to="m1", delivery_state="failed"
    )
    bots = admin_client.get(reverse("admin:chatbots_chatbot_changelist")).content.decode()
    assert "Сменить секрет" in bots
    assert "Префикс секрета" in bots
    channels = admin_client.get(reverse("admin:channels_app_channel_changelist")).content.decode()
    for label in ("Включить выбранные каналы", "Отключить выбранные каналы", "Отправить тестовое сообщение"):
        assert label in channels, label
    deliveries = admin_client.get(reverse("admin:dialogues_delivery_changelist")).content.decode()
    assert "Доставить заново" in deliveries


def test_english_is_the_default(admin_client: Client) -> None:
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert "Chat bots" in page
    assert "Чат-боты" not in page


# --- the LLM settings ---------------------------------------------------------------

# The hand-off settings, as the change page shows them (their defaults).
# The form's required fields besides the name (a browser posts them with their shown values).
PAUSE_FORM = {
    "pause_after_employee_minutes": "0",
    "pause_after_operator_reply_minutes": "30",
    "reply_policy": "each",
    "burst_quiet_ms": "1500",
    "burst_max_wait_ms": "8000",
}
LLM_FORM = {
    "system_prompt": "You are the shop's assistant.",
    "llm_model": "llama3.2",
    "temperature": "0.7",
    "max_output_tokens": "256",
    "context_messages": "8",
    "fallback_text": "Sorry, we will get back to you.",
    "vision": "on",
}


def test_change_page_has_an_llm_fieldset_with_the_seven_settings(admin_client: Client) -> None:
    bot = ChatBotFactory()
    response = admin_client.get(reverse("admin:chatbots_chatbot_change", args=[bot.pk]))
    fieldsets = {str(fieldset.name): fieldset for fieldset in response.context["adminform"]}
    assert "LLM" in fieldsets
    llm_fields = [field for line in fieldsets["LLM"] for field in line]
    assert [str(field.field.name) for field in llm_fields] == list(LLM_FORM)
    page = response.content.decode()
    for name in LLM_FORM:
        assert f'name="{name}"' in page


def test_add_page_asks_for_the_name_only(admin_client: Client) -> None:
    page = admin_client.get(reverse("admin:chatbots_chatbot_add")).content.decode()
    assert 'name="name"' in page
    assert 'name="system_prompt"' not in page


def test_change_page_saves_the_llm_settings(admin_client: Client) -> None:
    bot = ChatBotFactory(name="Shop")
    url = reverse("admin:chatbots_chatbot_change", args=[bot.pk])
    get = admin_client.get(url)
    response = admin_client.post(url, {"name": "Shop", **LLM_FORM, **PAUSE_FORM, **inline_management_data(get)})
    assert response.status_code == 302
    bot.refresh_from_db()
    assert (bot.system_prompt, bot.llm_model, bot.temperature) == ("You are the shop's assistant.", "llama3.2", 0.7)
    assert (bot.max_output_tokens, bot.context_messages) == (256, 8)
    assert bot.fallback_text == "Sorry, we will get back to you."
    assert bot.vision is True

    # Blank again: back to the platform's defaults.
    blank = dict.fromkeys(LLM_FORM, "")
    assert (
        admin_client.post(url, {"name": "Shop", **blank, **PAUSE_FORM, **inline_management_data(get)}).status_code
        == 302
    )
    bot.refresh_from_db()
    assert (bot.system_prompt, bot.llm_model, bot.fallback_text) == ("", "", "")
    assert (bot.temperature, bot.max_output_tokens, bot.context_messages) == (None, None, None)
    assert bot.vision is False  # an unticked box


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", "2.5"),
        ("temperature", "-1"),
        ("max_output_tokens", "0"),
        ("context_messages", "0"),
        ("context_messages", "1001"),
        ("temperature", "warm"),
        ("system_prompt", "p" * 20_001),
        ("fallback_text", "f" * 4_001),
        ("llm_model", "gpt\n4"),
    ],
)
def test_change_page_refuses_out_of_range_llm_settings(admin_client: Client, field: str, value: str) -> None:
    bot = ChatBotFactory(name="Shop")
    url = reverse("admin:chatbots_chatbot_change", args=[bot.pk])
    get = admin_client.get(url)
    response = admin_client.post(url, {"name": "Shop", field: value, **PAUSE_FORM, **inline_management_data(get)})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors[field]
    bot.refresh_from_db()
    assert getattr(bot, field) in (None, "")


def test_the_reply_policy_is_set_on_the_bot_page(admin_client: Client) -> None:
    bot = ChatBotFactory(name="Shop")
    url = reverse("admin:chatbots_chatbot_change", args=[bot.pk])
    get = admin_client.get(url)
    assert "burst_quiet_ms" in get.content.decode()
    form = {"name": "Shop", **PAUSE_FORM, **inline_management_data(get)}
    too_short = admin_client.post(url, {**form, "reply_policy": "burst", "burst_quiet_ms": "50"})
    assert too_short.status_code == 200  # below the least quiet time: the form says so
    bot.refresh_from_db()
    assert bot.reply_policy == "each"
    right = admin_client.post(
        url, {**form, "reply_policy": "burst", "burst_quiet_ms": "1000", "burst_max_wait_ms": "5000"}
    )
    assert right.status_code == 302
    bot.refresh_from_db()
    assert (bot.reply_policy, bot.burst_quiet_ms, bot.burst_max_wait_ms) == ("burst", 1000, 5000)


def test_change_page_links_to_adding_a_channel_for_this_bot(admin_client: Client) -> None:
    bot = ChatBotFactory(name="Lonely bot")
    page = admin_client.get(reverse("admin:chatbots_chatbot_change", args=[bot.pk])).content.decode()
    assert "Channels of this bot" in page
    assert "This bot has no channel yet" in page
    add_url = f"{reverse('admin:channels_app_channel_add')}?chat_bot={bot.pk}"
    assert f'href="{add_url}"' in page
    form = admin_client.get(add_url).context["adminform"].form
    assert str(form["chat_bot"].value()) == str(bot.pk)

    ChannelFactory(chat_bot=bot)
    page = admin_client.get(reverse("admin:chatbots_chatbot_change", args=[bot.pk])).content.decode()
    assert "This bot has no channel yet" not in page
    assert f'href="{add_url}"' in page
