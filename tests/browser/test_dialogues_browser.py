"""Finding a conversation and seeing failures, in a real browser against the real gunicorn
server: the dialogue list's filters and text search, and the Deliveries table fitting a
1366x768 screen with its actions in view. Screenshots land in test-artifacts/browser/."""

from __future__ import annotations

from typing import Any

import pytest

from channels_app.models import DeliveryState
from channels_app.tests.factories import ChannelFactory
from chatbots.tests.factories import ChatBotFactory
from dialogues.models import Dialogue, Message
from dialogues.tests.factories import DialogueFactory, MessageFactory
from tests.browser.test_first_hour_browser import log_in
from tests.support.live_server import LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def say(dialogue: Dialogue, text: str, *, role: str = Message.Role.USER, **fields: Any) -> Message:
    seq = dialogue.last_seq + 1
    message = MessageFactory(dialogue=dialogue, role=role, text=text, seq=seq, **fields)
    Dialogue.objects.filter(pk=dialogue.pk).update(
        last_seq=seq, message_count=dialogue.message_count + 1, last_message_at=message.created_at
    )
    dialogue.refresh_from_db()
    return message


def test_dialogue_list_filters_and_chat_id_search(
    page: Any, screenshot: Any, live_server_process: LiveServer, staff_user: Any
) -> None:
    shop = ChannelFactory(chat_bot=ChatBotFactory(name="Shop bot"), name="Shop widget")
    help_desk = ChannelFactory(chat_bot=ChatBotFactory(name="Help bot"), name="Help desk")
    ordering = DialogueFactory(channel=shop, chat_id="customer-order")
    say(ordering, "Where is my ORDER 1234?")
    say(ordering, "Looking into it", role=Message.Role.ASSISTANT, delivery_state=DeliveryState.DEAD)
    other = DialogueFactory(channel=help_desk, chat_id="customer-help")
    say(other, "How do I reset my password?")

    base = live_server_process.url
    log_in(page, base, staff_user.username)
    page.goto(f"{base}/admin/dialogues/dialogue/")
    table = page.inner_text("#result_list")
    assert "Shop bot" in table and "Help desk" in table
    assert "bot reply: Looking into it" in table  # the last message of each dialogue
    assert "customer: How do I reset my password?" in table
    assert "1 failed reply" in table
    assert "UTC" in table
    screenshot("dialogues-01-list")

    # The search matches the start of a chat id (or a message id, or a dialogue id).
    page.fill("#searchbar", "customer-ord")
    page.press("#searchbar", "Enter")
    page.wait_for_load_state()
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    assert "customer-order" in rows.first.inner_text()
    screenshot("dialogues-02-search-order")

    page.goto(f"{base}/admin/dialogues/dialogue/")
    page.get_by_role("link", name="has failed or dead replies").click()
    page.wait_for_load_state()
    assert page.locator("#result_list tbody tr").count() == 1
    assert "customer-order" in page.inner_text("#result_list")

    page.goto(f"{base}/admin/dialogues/dialogue/")
    page.locator("#changelist-filter").get_by_role("link", name="Help bot").click()
    page.wait_for_load_state()
    assert page.locator("#result_list tbody tr").count() == 1
    assert "customer-help" in page.inner_text("#result_list")
    screenshot("dialogues-03-filter-bot")


def test_deliveries_fit_1366_and_a_reply_page_redelivers(
    chromium: Any, screenshot: Any, live_server_process: LiveServer, staff_user: Any
) -> None:
    context = chromium.new_context(viewport={"width": 1366, "height": 768}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        channel = ChannelFactory(name="A channel with a rather long name for a narrow screen")
        dialogue = DialogueFactory(channel=channel, chat_id="customer-with-a-very-long-chat-identifier-0123456789")
        for n in range(3):
            say(dialogue, f"question {n}")
            say(
                dialogue, "A long reply " * 30, role=Message.Role.ASSISTANT, delivery_state=DeliveryState.DEAD,
                in_reply_to=f"q-{n}", last_error="connection refused by the receiving host " * 10,
                last_status_code=503,
            )  # fmt: skip
        base = live_server_process.url
        log_in(page, base, staff_user.username)
        page.goto(f"{base}/admin/dialogues/delivery/")
        page.wait_for_selector("#result_list")
        width = page.evaluate("window.innerWidth")
        # The table sits in a scrolling box: a column past that box's right edge is cut off
        # even while it is inside the window.
        area = page.locator("#changelist-form .results").bounding_box()
        assert area is not None and area["x"] + area["width"] <= width
        widths = page.evaluate(
            "(() => { const r = document.querySelector('#changelist-form .results');"
            " return [r.scrollWidth, r.clientWidth]; })()"
        )
        print("results scroll/client width", widths)
        for column in ("th.column-next_attempt", "th.column-last_result", "th.column-delivery_state"):
            box = page.locator(column).bounding_box()
            assert box is not None
            assert box["x"] + box["width"] <= area["x"] + area["width"] + 1, f"{column} is cut off at 1366 px"
        assert widths[0] <= widths[1] + 1
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        screenshot("deliveries-01-1366", page)

        page.locator("#result_list tbody tr th a").first.click()
        page.wait_for_selector("#redeliver-now")
        screenshot("deliveries-02-reply-page", page)
        page.click("#redeliver-now")
        page.wait_for_selector(".messagelist")
        assert "The worker makes one attempt within a second" in page.inner_text(".messagelist")
        assert Message.objects.filter(dialogue=dialogue, delivery_state=DeliveryState.PENDING).count() == 1
        screenshot("deliveries-03-redelivered", page)
    finally:
        context.close()
