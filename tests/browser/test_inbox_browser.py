"""The operators' inbox in a real browser against the real gunicorn server and worker: a
conversation that starts needing a human (the customer asks for one) appears in an open inbox
by itself within 3 s; the operator opens it, assigns it to themself, adds a private note, writes
with a canned reply, and resolves it, after which it leaves the inbox and the bot answers again.
Screenshots land in test-artifacts/browser/."""

from __future__ import annotations

import time
from typing import Any

import pytest

from channels_app.tests.factories import ChannelFactory
from chatbots.models import CannedReply
from chatbots.tests.factories import ChatBotFactory
from devtools.receiver import ChannelReceiver, Reply
from dialogues.models import Dialogue, Message
from tests.browser.conftest import log_in
from tests.browser.test_admin_browser import post_webhook, wait_until
from tests.support.live_server import LiveServer, WorkerProcess


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_the_inbox_live_and_working_a_conversation(
    page: Any, screenshot: Any, live_server_process: LiveServer, receiver: ChannelReceiver, staff_user: Any
) -> None:
    worker = WorkerProcess(env=live_server_process.env(), name="inbox-browser").start()
    try:
        _session(page, screenshot, live_server_process, receiver, staff_user)
    finally:
        worker.stop()


def _session(page: Any, screenshot: Any, server: LiveServer, receiver: ChannelReceiver, staff_user: Any) -> None:
    base = server.url
    bot = ChatBotFactory(name="Inbox bot", handoff_keywords="human, оператор", handoff_text="A human will answer.")
    CannedReply.objects.create(chat_bot=bot, shortcut="refund", text="Your refund is on its way.")
    channel = ChannelFactory(chat_bot=bot, url=receiver.url, name="Inbox channel")

    log_in(page, base, staff_user.username)
    page.goto(f"{base}/admin/inbox/")
    page.wait_for_selector("#inbox-empty:not([hidden])")
    page.evaluate("window.__same_page = true")

    # The customer asks for a human: the row appears without a reload, within 3 s of the hand-off.
    assert post_webhook(server, bot.plain_secret, channel, "I want a human please", "i-1").status_code == 200
    [handoff] = receiver.wait_for(1)
    assert handoff.json["text"] == "A human will answer."
    appeared = time.monotonic()
    page.wait_for_selector(f"tr[data-dialogue-id] >> text={channel.pk}", timeout=3_000)
    assert time.monotonic() - appeared <= 3.0
    assert page.evaluate("window.__same_page") is True
    row = page.locator("#inbox-rows tr").first
    assert "asked for a human" in row.inner_text() and "Unassigned" in row.inner_text()
    assert page.inner_text('[data-count="unassigned"]') == "1"
    screenshot("inbox-01-a-conversation-needs-a-human")

    # Open it, assign it to me, add a note.
    row.locator("a").first.click()
    page.wait_for_selector("#inbox-bar")
    page.click("button[name=assign_me]")
    page.wait_for_selector("#inbox-bar")
    assert page.inner_text("#inbox-assignee") == staff_user.username
    page.fill("#inbox-note-text", "VIP customer: refund approved")
    page.click("button[name=note]")
    page.wait_for_selector("li.bubble.role-NOTE")
    assert "only operators see it" in page.inner_text("li.bubble.role-NOTE")

    # A canned reply: "/ref" offers it, Enter inserts it, Send delivers it.
    receiver.reset()
    page.click("#transcript-text")
    page.keyboard.type("/ref")
    page.wait_for_selector("#canned-list li[aria-selected=true]")
    page.keyboard.press("Enter")
    assert page.input_value("#transcript-text") == "Your refund is on its way."
    screenshot("inbox-02-working-the-conversation")
    page.click("form.transcript-reply button[type=submit]")
    [sent] = receiver.wait_for(1)
    assert sent.json["role"] == "EMPLOYEE" and sent.json["text"] == "Your refund is on its way."
    assert not any(request.json.get("text") == "VIP customer: refund approved" for request in receiver.requests)

    # Resolve: out of the inbox, the bot answers again.
    page.click("button[name=resolve]")
    page.wait_for_selector(".messagelist")
    dialogue = Dialogue.objects.get(channel_id=channel.pk)
    assert dialogue.attention_at is None and not dialogue.is_paused
    page.goto(f"{base}/admin/inbox/")
    page.wait_for_selector("#inbox-empty:not([hidden])")
    screenshot("inbox-03-resolved")
    receiver.reset()
    assert post_webhook(server, bot.plain_secret, channel, "Thanks!", "i-2").status_code == 200
    [reply] = receiver.wait_for(1)
    assert reply.json["role"] == "ASSISTANT" and reply.json["in_reply_to"] == "i-2"
    assert Message.objects.filter(dialogue_id=dialogue.pk, role=Message.Role.NOTE).count() == 1


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_take_over_in_the_browser_silences_the_bot_and_its_owed_reply(
    page: Any, screenshot: Any, live_server_process: LiveServer, receiver: ChannelReceiver, staff_user: Any
) -> None:
    """The channel is down when the customer writes, so the bot's reply is owed (failing, to be
    retried). The operator takes the chat over from its page: once the channel is back, that
    reply never reaches the customer, and the chat is in the inbox as taken over."""
    worker = WorkerProcess(env=live_server_process.env(), name="inbox-take-over").start()
    try:
        base = live_server_process.url
        bot = ChatBotFactory(name="Take-over bot")
        channel = ChannelFactory(chat_bot=bot, url=receiver.url, name="Take-over channel")
        receiver.default = Reply(status=503)
        assert (
            post_webhook(live_server_process, bot.plain_secret, channel, "Where is my order?", "t-1").status_code == 200
        )
        wait_until(lambda: Message.objects.filter(role=Message.Role.ASSISTANT, delivery_state="failed").exists())
        dialogue = Dialogue.objects.get(channel_id=channel.pk)

        log_in(page, base, staff_user.username)
        page.goto(f"{base}/admin/dialogues/dialogue/{dialogue.pk}/change/")
        page.click("button[name=take_over]")
        page.wait_for_selector("button[name=give_back]")
        receiver.default = Reply(status=200)
        before = len(receiver.requests)
        reply = Message.objects.get(dialogue_id=dialogue.pk, role=Message.Role.ASSISTANT)
        wait_until(lambda: Message.objects.get(pk=reply.pk).delivery_state == "cancelled")
        # Well past the reply's next retry: nothing of the bot's arrives.
        time.sleep(3)
        assert [r.json for r in receiver.requests[before:] if r.json.get("role") == "ASSISTANT"] == []
        page.goto(f"{base}/admin/inbox/")
        page.wait_for_selector(f"#inbox-rows tr >> text={channel.pk}")
        assert "Taken over" in page.inner_text("#inbox-rows")
        screenshot("inbox-04-taken-over-owed-reply-cancelled")
    finally:
        worker.stop()
