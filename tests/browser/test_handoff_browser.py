"""The hand-off in a real browser against the real gunicorn server and worker: an operator
opens a dialogue, takes it over from the bot, writes to the customer from the transcript (the
message reaches the channel with role EMPLOYEE), sees a new customer message appear without
reloading the page, and gives the dialogue back. Screenshots land in test-artifacts/browser/."""

from __future__ import annotations

from typing import Any

import pytest

from channels_app.tests.factories import ChannelFactory
from chatbots.tests.factories import ChatBotFactory
from devtools.receiver import ChannelReceiver
from dialogues.models import Dialogue, Message
from tests.browser.test_admin_browser import PASSWORD, post_webhook, wait_until
from tests.support.live_server import LiveServer, WorkerProcess


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_take_over_reply_and_give_back_in_a_real_browser(
    page: Any, screenshot: Any, live_server_process: LiveServer, receiver: ChannelReceiver, staff_user: Any
) -> None:
    worker = WorkerProcess(env=live_server_process.env(), name="handoff-browser").start()
    try:
        _handoff_session(page, screenshot, live_server_process, receiver, staff_user)
    finally:
        worker.stop()


def _handoff_session(
    page: Any, screenshot: Any, live_server_process: LiveServer, receiver: ChannelReceiver, staff_user: Any
) -> None:
    base = live_server_process.url
    bot = ChatBotFactory(name="Hand-off bot")
    channel = ChannelFactory(chat_bot=bot, url=receiver.url, name="Hand-off channel")
    assert post_webhook(live_server_process, bot.plain_secret, channel, "I need a human", "h-1").status_code == 200
    [answer] = receiver.wait_for(1)
    assert answer.json["role"] == "ASSISTANT"
    receiver.reset()
    dialogue = Dialogue.objects.get(channel=channel)

    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", staff_user.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")

    # The dialogue's page: a chat transcript, newest at the bottom, the bot answering.
    page.goto(f"{base}/admin/dialogues/dialogue/{dialogue.pk}/change/")
    bubbles = page.locator("ol.transcript li.bubble")
    assert bubbles.count() == 2
    assert "I need a human" in bubbles.nth(0).inner_text()
    assert "role-ASSISTANT" in (bubbles.nth(1).get_attribute("class") or "")
    assert "delivered" in bubbles.nth(1).inner_text().lower()
    assert "The bot answers this customer." in page.inner_text(".handoff-bar")
    # The stylesheet and the script are served by the app itself.
    assert page.eval_on_selector("li.bubble.role-ASSISTANT", "e => getComputedStyle(e).alignSelf") == "flex-end"
    screenshot("handoff-01-transcript")

    # Take over: the bot is paused until given back.
    page.click("button[name=take_over]")
    page.wait_for_selector("button[name=give_back]")
    assert "You have taken this dialogue over" in page.inner_text(".messagelist")
    assert Dialogue.objects.get(pk=dialogue.pk).is_paused
    screenshot("handoff-02-taken-over")

    # Reply from the transcript: no reload, the message appears and reaches the channel.
    page.evaluate("window.__same_page = true")
    page.fill("#transcript-text", "Hello, this is Ann from support.")
    page.click("form.transcript-reply button[type=submit]")
    page.wait_for_selector("li.bubble.role-EMPLOYEE")
    [sent] = receiver.wait_for(1)
    assert sent.json["role"] == "EMPLOYEE" and sent.json["text"] == "Hello, this is Ann from support."
    operator_bubble = page.locator("li.bubble.role-EMPLOYEE")
    assert f"Operator {staff_user.username}" in operator_bubble.inner_text()
    assert page.input_value("#transcript-text") == ""
    # The poll shows the delivery once the worker has made it.
    page.wait_for_function(
        "document.querySelector('li.bubble.role-EMPLOYEE .bubble-state.state-delivered') !== null", timeout=15_000
    )
    assert page.evaluate("window.__same_page") is True
    stored = Message.objects.get(role=Message.Role.EMPLOYEE)
    assert stored.author_username == staff_user.username and stored.delivery_state == "delivered"

    # The customer answers while the bot is paused: it appears in the transcript by itself,
    # and the bot says nothing.
    assert post_webhook(live_server_process, bot.plain_secret, channel, "Thanks, Ann!", "h-2").json()["ignored"]
    page.wait_for_function(
        "[...document.querySelectorAll('li.bubble.role-USER')].some(e => e.textContent.includes('Thanks, Ann!'))",
        timeout=15_000,
    )
    assert page.evaluate("window.__same_page") is True
    assert "not answered: the bot was paused" in page.locator("li.bubble.role-USER").last.inner_text()
    last = page.locator("ol.transcript li.bubble").last
    assert "Thanks, Ann!" in last.inner_text()  # newest at the bottom
    screenshot("handoff-03-operator-replied")

    # Give back: the bot answers the next message again.
    page.click("button[name=give_back]")
    page.wait_for_selector("button[name=take_over]")
    assert "The bot answers this customer." in page.inner_text(".handoff-bar")
    assert not Dialogue.objects.get(pk=dialogue.pk).is_paused
    receiver.reset()
    assert post_webhook(live_server_process, bot.plain_secret, channel, "One more thing", "h-3").status_code == 200
    [reply] = receiver.wait_for(1)
    assert reply.json["role"] == "ASSISTANT" and reply.json["in_reply_to"] == "h-3"
    assert not Message.objects.filter(in_reply_to="h-2").exists()
    wait_until(lambda: page.locator("ol.transcript li.bubble").count() == 6)
    screenshot("handoff-04-given-back")

    # The list shows who answers each dialogue.
    page.goto(f"{base}/admin/dialogues/dialogue/?paused=no")
    assert str(channel.pk) in page.inner_text("#result_list")
    assert "answering" in page.inner_text("#result_list")
