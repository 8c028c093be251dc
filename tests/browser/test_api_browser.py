"""The browsable API in a real browser against the real gunicorn server, as a staff user signed
in to the admin: a bot created through its HTML form (201, the secret shown once), a channel
created through its form with the bot picked by name, and the channel updated through the
detail page's PUT form, which starts from its current values. Every request the pages make
stays on this host. Screenshots land in test-artifacts/browser/."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import pytest

from channels_app.models import Channel
from chatbots.models import ChatBot
from chatbots.services import chatbot_authenticate
from chatbots.tests.factories import ChatBotFactory
from tests.browser.conftest import LOCAL_HOSTS, log_in
from tests.support.live_server import LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def answer(page: Any) -> tuple[str, dict[str, Any]]:
    """The status line and the JSON body the browsable API shows for the last request."""
    info = page.inner_text(".response-info")
    status_line = next(line for line in info.splitlines() if line.startswith("HTTP "))
    body = info[info.index("{") : info.rindex("}") + 1]
    return status_line, json.loads(body)


def test_bot_and_channel_created_and_updated_through_the_browsable_api_forms(
    page: Any, screenshot: Any, live_server_process: LiveServer, staff_user: Any
) -> None:
    base = live_server_process.url
    ChatBotFactory(name="Sales desk")  # a second bot to choose from
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    log_in(page, base, staff_user.username)

    # /api/ lists where everything is.
    page.goto(f"{base}/api/")
    page.wait_for_selector(".response-info")
    assert answer(page)[1]["channels"] == f"{base}/api/channels/"
    screenshot("api-browser-01-root")

    # A bot, through the HTML form: 201 and its secret, shown in this answer.
    page.goto(f"{base}/api/chatbots/")
    form = page.locator("#post-object-form form")
    form.locator("input[name=name]").fill("Form bot")
    form.locator("textarea[name=system_prompt]").fill("Answer briefly.")
    form.locator("input[name=temperature]").fill("0.4")
    form.locator("input[name=pause_after_employee_minutes]").fill("15")
    screenshot("api-browser-02-bot-create-form")
    form.locator("button:has-text('POST')").click()
    page.wait_for_selector(".request-info:has-text('POST')")
    status_line, created = answer(page)
    assert status_line == "HTTP 201 Created"
    bot = ChatBot.objects.get(name="Form bot")
    assert (bot.system_prompt, bot.temperature, bot.pause_after_employee_minutes) == ("Answer briefly.", 0.4, 15)
    assert created["id"] == str(bot.pk)
    assert chatbot_authenticate(secret=created["secret_token"]) == bot
    # Under the answer, an empty create form again (not the created bot's values).
    assert page.locator("#post-object-form input[name=name]").input_value() == ""
    screenshot("api-browser-03-bot-created-secret-shown")

    # A channel, through the HTML form, the bot picked by its name.
    page.goto(f"{base}/api/channels/")
    form = page.locator("#post-object-form form")
    form.locator("input[name=name]").fill("Form channel")
    form.locator("select[name=chat_bot_id]").select_option(label=f"Form bot ({bot.pk})")
    form.locator("input[name=url]").fill("http://127.0.0.1:9/replies")
    assert form.locator("input[name=is_active]").is_checked()
    screenshot("api-browser-04-channel-create-form")
    form.locator("button:has-text('POST')").click()
    page.wait_for_selector(".request-info:has-text('POST')")
    status_line, created = answer(page)
    assert status_line == "HTTP 201 Created"
    channel = Channel.objects.get(name="Form channel")
    assert (channel.chat_bot_id, channel.settings.url, channel.is_active) == (
        bot.pk,
        "http://127.0.0.1:9/replies",
        True,
    )
    assert created["signing_secret"].startswith("whsec_")
    screenshot("api-browser-05-channel-created")

    # Its detail page: the PUT form starts from the channel as it is, and updates it.
    page.goto(f"{base}/api/channels/{channel.pk}/")
    form = page.locator("#put-object-form form")
    assert form.locator("input[name=name]").input_value() == "Form channel"
    assert form.locator("input[name=url]").input_value() == "http://127.0.0.1:9/replies"
    assert form.locator("input[name=is_active]").is_checked()
    raw = json.loads(page.locator("#put-generic-content-form textarea[name=_content]").input_value())
    assert raw == {
        "name": "Form channel",
        "url": "http://127.0.0.1:9/replies",
        "is_active": True,
        "typing_events": False,
        "chat_bot_id": str(bot.pk),
    }
    form.locator("input[name=name]").fill("Renamed channel")
    form.locator("input[name=is_active]").uncheck()
    screenshot("api-browser-06-channel-update-form")
    form.locator("button:has-text('PUT')").click()
    # DRF's script sends the PUT and writes its answer over this page (which said GET before).
    page.wait_for_selector(".request-info:has-text('PUT')")
    page.wait_for_selector("#put-object-form input[name=name]")
    status_line, updated = answer(page)
    assert status_line == "HTTP 200 OK"
    assert (updated["name"], updated["is_active"]) == ("Renamed channel", False)
    stored = Channel.objects.get(pk=channel.pk)
    assert (stored.name, stored.is_active, stored.chat_bot_id) == ("Renamed channel", False, bot.pk)
    # The form under the answer shows the new values.
    assert page.locator("#put-object-form input[name=name]").input_value() == "Renamed channel"
    assert not page.locator("#put-object-form input[name=is_active]").is_checked()
    screenshot("api-browser-07-channel-updated")

    visited = {urlsplit(url).path for url in requests}
    assert "/static/rest_framework/js/ajax-form.js" in visited
    elsewhere = [
        url
        for url in requests
        if urlsplit(url).scheme not in ("data", "blob") and urlsplit(url).hostname not in LOCAL_HOSTS
    ]
    assert elsewhere == [], elsewhere
