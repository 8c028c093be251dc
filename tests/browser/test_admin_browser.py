"""An operator's session in a real browser against the real gunicorn server: log in, create a
bot (its secret shown once), create a channel, send a message through the webhook, read the
dialogue, and redeliver a reply that failed. Screenshots of each step land in
test-artifacts/browser/."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import requests

from channels_app.models import Channel
from chatbots.models import ChatBot
from devtools.receiver import ChannelReceiver, Reply
from dialogues.models import Delivery, Message
from tests.support.live_server import LiveServer, WorkerProcess

PASSWORD = "operator-pass-123"  # the `staff_user` fixture's


def post_webhook(server: LiveServer, secret: str, channel: Channel, text: str, message_id: str) -> requests.Response:
    return requests.post(
        f"{server.url}/api/webhook/new_message",
        headers={"x-chatbot_auth_token": f"Bearer {secret}"},
        json={"chat_id": str(channel.pk), "text": text, "message_sender": "customer", "message_id": message_id},
        timeout=30,
    )


def wait_until(condition: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def run_action(page: Any, action: str) -> None:
    page.select_option("select[name=action]", action)
    page.click("button[name=index]")
    page.wait_for_load_state()


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_operator_session_in_a_real_browser(
    page: Any, screenshot: Any, live_server_process: LiveServer, receiver: ChannelReceiver, staff_user: Any
) -> None:
    # The worker, as `make run` starts it beside the server; its retries are spaced widely so
    # that the operator's "redeliver now" is what sends the failed reply.
    worker = WorkerProcess(env={**live_server_process.env(), "DELIVERY_RETRY_BASE_S": "60"}, name="browser").start()
    try:
        _operator_session(page, screenshot, live_server_process, receiver, staff_user)
    finally:
        worker.stop()


def _operator_session(
    page: Any, screenshot: Any, live_server_process: LiveServer, receiver: ChannelReceiver, staff_user: Any
) -> None:
    base = live_server_process.url
    css = []
    page.on("response", lambda r: css.append((r.url, r.status)) if r.url.endswith(".css") else None)

    # 1. Log in. The admin's stylesheets come from WhiteNoise in the same process.
    page.goto(f"{base}/admin/")
    assert "/admin/login/" in page.url
    screenshot("01-login")
    page.fill("#id_username", staff_user.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")
    assert page.inner_text("#site-name") == "Chat-bot platform"
    for label in ("Chat bots", "Channels", "Dialogues", "Deliveries"):
        assert page.get_by_role("link", name=label, exact=True).count() >= 1
    screenshot("02-index")
    assert any(url.endswith("/static/admin/css/base.css") and status == 200 for url, status in css), css
    assert all(status == 200 for _, status in css), css
    # The stylesheet applied, not just fetched: the header has the admin's colours.
    assert page.eval_on_selector("#header", "e => getComputedStyle(e).backgroundColor") != "rgba(0, 0, 0, 0)"

    # 2. Create a bot: its secret is shown once, with a copy button.
    page.goto(f"{base}/admin/chatbots/chatbot/add/")
    page.fill("#id_name", "Browser bot")
    page.click("input[name=_save]")
    secret_input = page.wait_for_selector("input.secret-value")
    secret = secret_input.input_value()
    assert secret.startswith("cbs_")
    assert page.get_by_text("shown only this once").count() == 1
    page.click("button[data-copy-target]")
    page.wait_for_function("document.querySelector('button[data-copy-target]').textContent === 'Copied'")
    screenshot("03-bot-secret-once")
    bot = ChatBot.objects.get(name="Browser bot")
    page.click("text=I have copied it: open the bot")
    page.wait_for_selector("#chatbot_form")
    assert secret not in page.content()
    assert f"{bot.secret_prefix}…" in page.content()
    screenshot("04-bot-change-page")

    # 3. Create a channel pointing at the receiver.
    page.goto(f"{base}/admin/channels_app/channel/add/")
    page.fill("#id_name", "Browser channel")
    page.click(".field-chat_bot .select2-selection")  # the bot, picked by its name
    page.fill(".select2-search__field", "Browser bot")
    page.click(".select2-results__option:has-text('Browser bot')")
    page.fill("#id_url", receiver.url)
    page.click("input[name=_save]")
    page.wait_for_selector("#connect-panel")  # saved: its page, with its signing secret, once
    channel = Channel.objects.get(name="Browser channel")
    assert page.input_value("#connect-signing-secret") == channel.signing_secret
    page.goto(f"{base}/admin/channels_app/channel/")
    assert page.get_by_text("Browser channel").count() >= 1
    assert channel.settings.token not in page.content()  # never in the list
    screenshot("05-channel-list")
    page.goto(f"{base}/admin/chatbots/chatbot/{bot.pk}/change/")
    assert "Browser channel" in page.inner_text(".inline-group")
    screenshot("05b-bot-with-its-channel")
    page.goto(f"{base}/admin/channels_app/channel/{channel.pk}/change/")
    assert page.input_value("#channel-token") == channel.settings.token  # here, for copying
    screenshot("05c-channel-change-page")
    page.goto(f"{base}/admin/channels_app/channel/")

    # The test-message action hands the test to the worker; the result shows in the list
    # when it comes, without a reload.
    answer = threading.Event()
    receiver.then(Reply(release=answer))  # the channel takes its time to answer the test
    page.check(f"input[name=_selected_action][value='{channel.pk}']")
    run_action(page, "send_test_message")
    assert "on its way" in page.locator(".messagelist .success").inner_text()
    assert receiver.wait_for(1)[0].json["test"] is True
    assert "a test message is on its way" in page.inner_text("#result_list td.field-last_test")
    screenshot("06a-channel-test-message-on-its-way")
    answer.set()
    wait_until(lambda: Channel.objects.get(pk=channel.pk).last_test_at)
    page.wait_for_function(
        "document.querySelector('#result_list td.field-last_test').innerText.includes('✓ HTTP 200')",
        timeout=10_000,
    )
    screenshot("06-channel-test-message")
    receiver.reset()

    # 4. A customer writes through the webhook; the bot's reply reaches the receiver.
    response = post_webhook(live_server_process, secret, channel, "Hello from the browser test", "browser-1")
    assert response.status_code == 200, response.text
    [delivered] = receiver.wait_for(1)
    answer = delivered.json["text"]

    # 5. The dialogue shows both messages, oldest first.
    page.goto(f"{base}/admin/dialogues/dialogue/")
    page.click(f"text={channel.pk}")
    page.wait_for_selector("table.history")
    rows = page.locator("table.history tbody tr")
    assert rows.count() == 2
    assert "Hello from the browser test" in rows.nth(0).inner_text()
    assert answer in rows.nth(1).inner_text()
    screenshot("07-dialogue")

    # 6. The channel starts refusing replies: the next one fails, and shows under Deliveries.
    receiver.reset()
    receiver.default = Reply(status=400)
    response = post_webhook(live_server_process, secret, channel, "Is anyone there?", "browser-2")
    assert response.status_code == 200, response.text
    # Listed as pending from the moment the reply exists; the refused attempt follows.
    failed = wait_until(lambda: Delivery.objects.filter(channel=channel, delivery_state__in=["failed", "dead"]).first())
    assert failed is not None
    receiver.reset()  # the channel is fixed

    page.goto(f"{base}/admin/dialogues/delivery/")
    assert page.locator("#result_list tbody tr").count() == 1
    screenshot("08-deliveries-failed")
    page.check(f"input[name=_selected_action][value='{failed.pk}']")
    run_action(page, "redeliver_now")
    assert page.locator(".messagelist .success").inner_text().startswith("1 reply: the worker makes one attempt")
    [redelivered] = receiver.wait_for(1)
    assert redelivered.json["text"] == Message.objects.get(pk=failed.pk).text
    assert wait_until(lambda: Message.objects.get(pk=failed.pk).delivery_state == "delivered")
    assert not Delivery.objects.exists()
    page.goto(f"{base}/admin/dialogues/delivery/")
    screenshot("09-redelivered")

    # The operator's view of the whole dialogue now has all four messages.
    page.goto(f"{base}/admin/dialogues/dialogue/")
    page.click(f"text={channel.pk}")
    assert page.locator("table.history tbody tr").count() == 4
    screenshot("10-dialogue-after-redelivery")

    # A browser asking for Russian gets our labels in Russian.
    ru = page.context.browser.new_context(viewport={"width": 1600, "height": 900}, locale="ru-RU")
    ru.add_cookies(page.context.cookies())
    ru_page = ru.new_page()
    ru_page.goto(f"{base}/admin/")
    assert ru_page.inner_text("#site-name") == "Платформа чат-ботов"
    assert ru_page.get_by_role("link", name="Доставки", exact=True).count() >= 1
    screenshot("11-index-ru", ru_page)
    ru.close()

    # The bot's secret and the channel's token never reached the server's log.
    log = live_server_process.log_text()
    assert secret not in log
    assert channel.settings.token not in log
