"""The rest of the operator's walk, in a real browser against the real gunicorn server: no
admin list cut off at 1366 px, the language switch remembered per user, the bot page's
channels and its LLM chart. Screenshots land in test-artifacts/browser/."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib import admin
from django.urls import reverse
from django.utils import timezone

from channels_app.models import Channel, DeliveryState
from channels_app.tests.factories import ChannelFactory
from chatbots.tests.factories import ChatBotFactory
from core.models import UserPreference
from dialogues.models import Message
from dialogues.store.collections import dialogues_collection
from dialogues.tests.factories import DialogueFactory
from tests.browser.conftest import log_in
from tests.browser.test_dialogues_browser import say
from tests.support.live_server import LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Every table on the page, against the box it sits in (the list's scrolling `.results`, or
# the page): [table id or class, table width, container width].
TABLE_WIDTHS = """(() => [...document.querySelectorAll('table')].map(t => {
  const box = t.closest('.results') || t.parentElement;
  return [t.id || t.className || t.parentElement.className, Math.ceil(t.scrollWidth),
          Math.floor(box.clientWidth), document.documentElement.scrollWidth, window.innerWidth];
}))()"""


def _some_of_everything() -> None:
    """Rows with long values in every list, as an operator's screen has them."""
    bot = ChatBotFactory(name="Support bot for the online shop and the delivery desk")
    channel = ChannelFactory(
        chat_bot=bot,
        name="Telegram widget of the online shop (main)",
        url="https://hooks.shop-with-a-long-domain-name.example.com/telegram/incoming/replies/0123456789",
    )
    Channel.objects.filter(pk=channel.pk).update(
        last_delivery_state=DeliveryState.DEAD, last_delivery_at=timezone.now(), consecutive_failures=7,
        breaker_open_until=timezone.now() + timedelta(minutes=5), last_test_at=timezone.now(),
        last_test_ok=False, last_test_result="Connection timed out after 10 s",
    )  # fmt: skip
    dialogue = DialogueFactory(channel=channel, chat_id="customer-with-a-very-long-chat-identifier-0123456789")
    for n in range(2):
        say(dialogue, f"Where is my order number {n} placed last week on the website? " * 3, message_id=f"q-{n}")
        say(
            dialogue, "Your order is on its way " * 10, role=Message.Role.ASSISTANT,
            delivery_state=DeliveryState.DEAD, in_reply_to=f"q-{n}",
            last_error="connection refused by the receiving host " * 5, last_status_code=503,
        )  # fmt: skip


@pytest.mark.parametrize("locale", ["en-US", "ru-RU"])
def test_no_admin_list_is_cut_off_at_1366_px(
    chromium: Any, screenshot: Any, live_server_process: LiveServer, staff_user: Any, locale: str
) -> None:
    _some_of_everything()
    context = chromium.new_context(viewport={"width": 1366, "height": 768}, locale=locale)
    page = context.new_page()
    page.set_default_timeout(15_000)
    base = live_server_process.url
    cut = []
    try:
        log_in(page, base, staff_user.username)
        for model in admin.site._registry:
            opts = model._meta
            url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
            page.goto(f"{base}{url}")
            page.wait_for_selector("#content")
            for name, table, container, document, window in page.evaluate(TABLE_WIDTHS):
                if table > container + 1 or document > window:
                    cut.append(f"{url} {name}: table {table} px in {container} px (page {document} in {window})")
            screenshot(f"walk-1366-{locale}-{opts.app_label}-{opts.model_name}", page)
    finally:
        context.close()
    assert cut == []


def test_the_language_switch_is_remembered_per_user(
    chromium: Any, screenshot: Any, live_server_process: LiveServer, staff_user: Any
) -> None:
    base = live_server_process.url
    first = chromium.new_context(viewport={"width": 1366, "height": 768}, locale="en-US")
    page = first.new_page()
    page.set_default_timeout(15_000)
    try:
        log_in(page, base, staff_user.username)
        assert page.get_attribute("html", "lang") == "en"
        with page.expect_navigation():
            page.select_option("#language-switch select", "ru")
        assert page.get_attribute("html", "lang") == "ru"
        assert "выйти" in page.inner_text("#user-tools").lower()
        screenshot("walk-language-ru", page)
    finally:
        first.close()
    assert UserPreference.objects.get(user=staff_user).language == "ru"

    # Another browser, English by its own settings: the admin is in Russian once signed in.
    second = chromium.new_context(viewport={"width": 1366, "height": 768}, locale="en-US")
    page = second.new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto(f"{base}/admin/login/")
        assert page.get_attribute("html", "lang") == "en"
        page.fill("#id_username", staff_user.username)
        page.fill("#id_password", "operator-pass-123")
        page.click("input[type=submit]")
        page.wait_for_selector("#site-name")
        assert page.get_attribute("html", "lang") == "ru"
        assert page.input_value("#language-switch select") == "ru"
        with page.expect_navigation():
            page.select_option("#language-switch select", "en")
        assert page.get_attribute("html", "lang") == "en"
    finally:
        second.close()


def test_the_bot_page_lists_its_channels_and_charts_its_usage(
    page: Any, screenshot: Any, live_server_process: LiveServer, staff_user: Any
) -> None:
    bot = ChatBotFactory(name="Chart bot")
    base = live_server_process.url
    log_in(page, base, staff_user.username)
    page.goto(f"{base}{reverse('admin:chatbots_chatbot_change', args=[bot.pk])}")
    assert page.locator(".llm-usage-bar").count() == 30
    assert not page.locator("#llm-usage-days").evaluate("d => d.open")
    assert not page.locator(".llm-usage-day").first.is_visible()
    screenshot("walk-bot-page", page)
    page.click("text=Add a channel for this bot")
    page.wait_for_selector("#id_chat_bot")
    assert page.input_value("#id_chat_bot") == str(bot.pk)


def test_the_chat_view_says_what_a_message_waits_for(
    page: Any, screenshot: Any, live_server_process: LiveServer, staff_user: Any
) -> None:
    channel = ChannelFactory(name="Shop widget")
    dialogue = DialogueFactory(channel=channel, chat_bot=channel.chat_bot, chat_id="customer-waiting")
    later = timezone.now() + timedelta(minutes=10)
    say(dialogue, "Where is my order?", message_id="q-1", reply_state=Message.ReplyState.REPLIED)
    say(
        dialogue, "It left the warehouse today.", role=Message.Role.ASSISTANT, in_reply_to="q-1",
        delivery_state=DeliveryState.FAILED, delivery_attempts=2, next_attempt_at=later,
        last_error="Received status code 503", last_status_code=503,
    )  # fmt: skip
    say(dialogue, "Hello? Anyone there?", message_id="q-2", reply_state=Message.ReplyState.AWAITING)
    dialogues_collection().update_one({"_id": dialogue.pk}, {"$set": {"work_due_at": later, "done_seq": 1}})
    base = live_server_process.url
    log_in(page, base, staff_user.username)
    page.goto(f"{base}{reverse('admin:dialogues_dialogue_change', args=[dialogue.pk])}")
    waiting = page.locator('[data-message-id="q-2"] .bubble-state').inner_text()
    assert "waiting for an earlier reply to reach the channel" in waiting and "next attempt at" in waiting
    assert "answering" not in waiting
    screenshot("walk-chat-waiting-behind-a-failed-reply", page)
    page.goto(f"{base}{reverse('admin:dialogues_delivery_changelist')}")
    assert "next attempt at" not in page.inner_text("#result_list")  # a time, in its column
    screenshot("walk-deliveries-next-attempt", page)
