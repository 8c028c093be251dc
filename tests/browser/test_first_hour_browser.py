"""The first hour of an operator and an integrator, in a real browser against the real
gunicorn server: a bot's secret revealed once (a reload creates nothing and shows it no more),
a channel picked by its bot's name with the "How to connect" panel, and the docs and the admin
loading nothing from any other host. Screenshots land in test-artifacts/browser/."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from channels_app.models import Channel
from channels_app.tests.factories import ChannelFactory
from chatbots.models import ChatBot
from chatbots.services import chatbot_authenticate
from chatbots.tests.factories import ChatBotFactory
from core.mongo import mongo_collection
from tests.browser.conftest import ARTIFACTS, LOCAL_HOSTS, log_in
from tests.support.live_server import LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_bot_secret_is_revealed_once_and_a_reload_creates_nothing(
    page: Any, screenshot: Any, live_server_process: LiveServer, staff_user: Any
) -> None:
    base = live_server_process.url
    log_in(page, base, staff_user.username)
    page.goto(f"{base}/admin/chatbots/chatbot/add/")
    page.fill("#id_name", "First-hour bot")
    page.click("input[name=_save]")
    secret = page.wait_for_selector("input.secret-value").input_value()
    # POST/redirect/GET: the page showing the secret is a GET of its own.
    assert "/admin/chatbots/chatbot/secret/" in page.url
    bot = ChatBot.objects.get(name="First-hour bot")
    assert chatbot_authenticate(secret=secret) == bot
    screenshot("first-hour-01-bot-secret-revealed")

    page.reload()
    page.wait_for_selector(".secret-already-shown")
    assert secret not in page.content()
    assert page.locator("input.secret-value").count() == 0
    assert "already shown" in page.inner_text("#content-main")
    assert ChatBot.objects.filter(name="First-hour bot").count() == 1
    screenshot("first-hour-02-bot-secret-reload")

    # The back button does not bring it back either (the page is not cached).
    page.goto(f"{base}/admin/chatbots/chatbot/")
    page.go_back()
    page.wait_for_load_state()
    assert secret not in page.content()

    # "Already shown" offers a rotation, which asks first and then reveals the new secret once.
    page.wait_for_selector(".secret-already-shown")
    page.click("a.rotate-link")
    page.click("input[type=submit]")
    new_secret = page.wait_for_selector("input.secret-value").input_value()
    assert new_secret != secret
    assert chatbot_authenticate(secret=new_secret) == bot
    assert chatbot_authenticate(secret=secret) is None
    screenshot("first-hour-03-bot-secret-rotated")
    page.reload()
    page.wait_for_selector(".secret-already-shown")
    assert chatbot_authenticate(secret=new_secret) == bot  # the reload rotated nothing


def test_channel_picked_by_bot_name_then_how_to_connect(
    page: Any, screenshot: Any, live_server_process: LiveServer, staff_user: Any
) -> None:
    base = live_server_process.url
    bot = ChatBotFactory(name="Support desk")
    ChatBotFactory(name="Sales desk")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    log_in(page, base, staff_user.username)

    # The bot is picked by typing its name (the admin's autocomplete), not its id.
    page.goto(f"{base}/admin/channels_app/channel/add/")
    page.fill("#id_name", "Web chat")
    page.click(".field-chat_bot .select2-selection")
    page.fill(".select2-search__field", "support")
    page.wait_for_selector(".select2-results__option:has-text('Support desk')")
    screenshot("first-hour-04-channel-pick-bot-by-name")
    page.click(".select2-results__option:has-text('Support desk')")
    page.fill("#id_url", "http://127.0.0.1:9/replies")
    page.click("input[name=_save]")
    # Saved: the channel's page, with how to connect and its signing secret, shown this once.
    page.wait_for_selector("#connect-panel")
    channel = Channel.objects.get(name="Web chat")
    assert channel.chat_bot_id == bot.pk
    assert page.input_value("#connect-signing-secret") == channel.signing_secret
    screenshot("first-hour-05-channel-saved-signing-secret-once")
    page.reload()
    page.wait_for_selector("#connect-panel")
    assert page.locator("#connect-signing-secret").count() == 0
    assert "Already shown" in page.inner_text("#connect-signing")

    page.goto(f"{base}/admin/channels_app/channel/")
    row = page.locator("#result_list tr", has_text="Web chat").inner_text()
    assert str(channel.pk) in row  # the chat_id integrators send
    assert "Support desk" in row
    screenshot("first-hour-05-channel-list")

    page.click("text=Web chat")
    page.wait_for_selector("#connect-panel")
    panel = page.inner_text("#connect-panel")
    assert page.input_value("#connect-webhook-url") == f"{base}/api/webhook/new_message"
    assert page.input_value("#connect-chat-id") == str(channel.pk)
    assert page.input_value("#connect-header") == "x-chatbot_auth_token: Bearer <bot secret>"
    assert f'"chat_id": "{channel.pk}"' in page.inner_text("#connect-curl")
    assert page.inner_text("#connect-reply-url") == "http://127.0.0.1:9/replies"
    assert "x-chat_auth_token: Bearer <channel token>" in panel
    screenshot("first-hour-06-channel-how-to-connect")

    # Copy the chat_id (the app's own script; 127.0.0.1 is a secure context).
    page.click("button[data-copy-target=connect-chat-id]")
    page.wait_for_function(
        "document.querySelector('button[data-copy-target=connect-chat-id]').textContent === 'Copied'"
    )
    assert page.evaluate("navigator.clipboard.readText()") == str(channel.pk)

    # "Send test message": handed to the worker, the page answers at once (the URL is dead).
    page.click("#connect-send-test input[type=submit]")
    page.wait_for_selector(".messagelist .success")
    assert "on its way" in page.inner_text(".messagelist")
    document = mongo_collection(Channel._meta.db_table).find_one({"_id": channel.pk})
    assert document is not None and document.get("test_requested_at") is not None
    screenshot("first-hour-07-channel-test-requested")

    # "Rotate token" asks first; dismissed, nothing changes; accepted, the token is new.
    old_token = Channel.objects.get(pk=channel.pk).settings.token
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#connect-rotate-token input[type=submit]")
    page.wait_for_timeout(300)
    assert Channel.objects.get(pk=channel.pk).settings.token == old_token
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#connect-rotate-token input[type=submit]")
    page.wait_for_selector(".messagelist .success")
    new_token = Channel.objects.get(pk=channel.pk).settings.token
    assert new_token != old_token
    assert page.input_value("#channel-token") == new_token
    screenshot("first-hour-08-channel-token-rotated")


def test_docs_and_admin_load_nothing_from_other_hosts(
    page: Any, screenshot: Any, live_server_process: LiveServer, staff_user: Any
) -> None:
    base = live_server_process.url
    bot = ChatBotFactory(name="Offline bot")
    channel = ChannelFactory(chat_bot=bot, name="Offline channel")
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    # Loads a page's Content-Security-Policy stopped count too: the page asked for them (ReDoc's
    # logo from cdn.redoc.ly was one, hidden that way). The browser reports each as a violation.
    page.add_init_script(
        "window.__violations = [];"
        "document.addEventListener('securitypolicyviolation', e => window.__violations.push(e.blockedURI));"
    )
    violations: list[str] = []

    # `/` leads to the operators' inbox in the admin (here its login page).
    page.goto(f"{base}/")
    assert page.url == f"{base}/admin/login/?next=/admin/inbox/"
    log_in(page, base, staff_user.username)
    pages = [
        ("/api/docs/", ".swagger-ui .info .title"),
        ("/api/redoc/", "h1:has-text('Chat-bot platform API')"),
        ("/api/", "pre"),
        ("/admin/", "#site-name"),
        ("/admin/inbox/", "#inbox-table"),
        ("/admin/chatbots/chatbot/", "#result_list"),
        ("/admin/chatbots/chatbot/add/", "#chatbot_form"),
        (f"/admin/chatbots/chatbot/{bot.pk}/change/", "#chatbot_form"),
        ("/admin/channels_app/channel/", "#result_list"),
        ("/admin/channels_app/channel/add/", "#channel_form"),
        (f"/admin/channels_app/channel/{channel.pk}/change/", "#connect-panel"),
        ("/admin/dialogues/dialogue/", "#changelist"),
    ]
    for path, ready in pages:
        page.goto(f"{base}{path}")
        page.wait_for_selector(ready)
        page.wait_for_load_state("networkidle")
        violations += page.evaluate("window.__violations")
        name = "first-hour-offline-" + path.strip("/").replace("/", "-")[:60]
        if path.startswith("/api/"):
            # The docs' pages are very long: the visible part is enough (and quick).
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
        else:
            screenshot(name)

    visited = {urlsplit(url).path for url in requests}
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in visited
    assert "/api/redoc/redoc.standalone.js" in visited
    assert "/static/channels_app/connect.js" in visited
    elsewhere = [
        url
        for url in requests
        if urlsplit(url).scheme not in ("data", "blob") and urlsplit(url).hostname not in LOCAL_HOSTS
    ]
    assert elsewhere == [], elsewhere
    assert violations == [], violations
