"""The widget in real Chromium, against the real gunicorn server, worker and stream process: a
page of another origin embeds it, a visitor talks to the (mock LLM) bot, reloads and sees the
conversation, a second visitor sees none of it, a message of HTML shows as text, nothing leaves
the machine, and a page of a disallowed origin gets nothing. Screenshots land in
test-artifacts/browser/."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings

from channels_app.kinds.webchat.tests.factories import webchat_channel_create
from channels_app.kinds.webchat.tests.processes import StreamProcess
from devtools.embedded_mongo import free_port
from dialogues.models import Message
from tests.browser.conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, LOCAL_HOSTS
from tests.support.live_server import LiveServer, WorkerProcess

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not found: apt-get install -y chromium"),
]

XSS = "<img src=x onerror=alert(1)>"


class SitePages:
    """A shop's site on another origin: one page that embeds the widget."""

    def __init__(self) -> None:
        self.html = b""
        pages = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(pages.html)))
                self.end_headers()
                self.wfile.write(pages.html)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def embed(self, *, app: str, channel_id: str, lang: str = "en") -> None:
        self.html = (
            f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><title>Shop</title></head>'
            f"<body><h1>Our shop</h1><p>Bikes and parts.</p>"
            f'<script src="{app}/channels/webchat/webchat.js" data-channel="{channel_id}" async></script>'
            f"</body></html>"
        ).encode()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def stack(django_db_setup: Any) -> Iterator[dict[str, Any]]:
    """The stream process, gunicorn told where it is, and the worker."""
    stream = StreamProcess()
    server = LiveServer(
        db_name=settings.DATABASES["default"]["NAME"], env={"WEBCHAT_STREAM_URL": f"http://127.0.0.1:{stream.port}"}
    ).start()
    worker = WorkerProcess(env=server.env(), name="webchat-browser").start()
    site = SitePages()
    try:
        yield {"server": server, "stream": stream, "site": site}
    finally:
        site.stop()
        worker.stop()
        server.stop()
        stream.stop()


@pytest.fixture(scope="module")
def chromium(stack: dict[str, Any]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            yield browser
            browser.close()


class Visitor:
    """One browser context (its own localStorage): one visitor."""

    def __init__(self, chromium: Any, name: str) -> None:
        self.context = chromium.new_context(viewport={"width": 1100, "height": 760}, locale="en-US")
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.name = name
        self.requests: list[str] = []
        self.statuses: list[tuple[str, int]] = []
        self.dialogs: list[str] = []
        self.failed: list[str] = []
        self.page.on("requestfailed", lambda request: self.failed.append(request.url))
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("response", lambda response: self.statuses.append((response.url, response.status)))

        def dismiss(dialog: Any) -> None:
            self.dialogs.append(dialog.message)
            dialog.dismiss()

        self.page.on("dialog", dismiss)

    def open_chat(self) -> None:
        self.page.click("button.launcher")
        self.page.wait_for_selector("div.window:not([hidden])")

    def send(self, text: str) -> None:
        self.page.fill("#webchat-input", text)
        self.page.press("#webchat-input", "Enter")

    def bubbles(self, role: str = "") -> list[str]:
        selector = f"li.msg.{role}" if role else "li.msg"
        return [text.split(": ", 1)[1] for text in self.page.locator(selector).all_text_contents()]

    def wait_for_bubbles(self, count: int, role: str = "") -> list[str]:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            found = self.bubbles(role)
            if len(found) >= count:
                return found
            self.page.wait_for_timeout(100)
        raise AssertionError(f"{self.name}: {count} {role or ''} messages never appeared; saw {self.bubbles()}")

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"))

    def close(self) -> None:
        self.context.close()


@pytest.mark.django_db(transaction=True)
def test_a_visitor_talks_to_the_bot_from_another_sites_page(chromium: Any, stack: dict[str, Any]) -> None:
    server, site = stack["server"], stack["site"]
    site_origin = f"http://127.0.0.1:{site.port}"
    channel = webchat_channel_create(origins=[site_origin], title="Bike shop")
    site.embed(app=server.url, channel_id=str(channel.pk))

    alice = Visitor(chromium, "alice")
    bob = Visitor(chromium, "bob")
    try:
        alice.page.goto(site_origin + "/")
        launcher = alice.page.locator("button.launcher")
        assert launcher.get_attribute("aria-label") == "Open chat"
        assert launcher.get_attribute("aria-expanded") == "false"
        alice.open_chat()
        from playwright.sync_api import expect

        expect(alice.page.locator("h2")).to_have_text("Bike shop")  # the channel's title, once the session is made
        log = alice.page.locator("ol.log")
        assert (log.get_attribute("role"), log.get_attribute("aria-live")) == ("log", "polite")
        # Opening puts the cursor in the message box; Esc closes and gives focus back.
        assert alice.page.evaluate("document.querySelector('[data-webchat]').shadowRoot.activeElement.id") == (
            "webchat-input"
        )
        alice.shot("webchat-01-open")

        alice.send("Do you sell tubes?")
        assert alice.wait_for_bubbles(1, "assistant")[0].endswith("Do you sell tubes?")  # the mock LLM echoes
        assert alice.bubbles("user") == ["Do you sell tubes?"]
        alice.shot("webchat-02-reply")

        # HTML in a message is text: no element made of it, no script run.
        alice.send(XSS)
        assert alice.wait_for_bubbles(2, "assistant")[1].endswith(XSS)
        assert alice.bubbles("user")[-1] == XSS
        assert alice.page.locator("img").count() == 0
        assert (
            alice.page.evaluate("document.querySelector('[data-webchat]').shadowRoot.querySelectorAll('img').length")
            == 0
        )
        alice.page.wait_for_timeout(300)
        assert alice.dialogs == []
        alice.shot("webchat-03-html-as-text")

        alice.page.keyboard.press("Escape")
        alice.page.wait_for_selector("div.window[hidden]", state="attached")
        assert launcher.get_attribute("aria-expanded") == "false"

        # A reload continues the conversation.
        alice.page.reload()
        alice.open_chat()
        assert alice.wait_for_bubbles(4) and alice.bubbles("user") == ["Do you sell tubes?", XSS]
        alice.shot("webchat-04-after-reload")

        # Another visitor sees nothing of Alice's, and has a conversation of its own.
        bob.page.goto(site_origin + "/")
        bob.open_chat()
        bob.send("Hi, Bob here")
        assert bob.wait_for_bubbles(1, "assistant")[0].endswith("Hi, Bob here")
        assert bob.bubbles("user") == ["Hi, Bob here"]
        assert not any("tubes" in text or "img" in text for text in bob.bubbles())
        bob.shot("webchat-05-second-visitor")
        stored = Message.objects.filter(channel_id=channel.pk, role="USER")
        assert len({message.dialogue_id for message in stored}) == 2

        # Replies came over the stream, and nothing left the machine.
        assert any("/stream?visitor=" in url for url in alice.requests)
        for visitor in (alice, bob):
            hosts = {urlsplit(url).hostname for url in visitor.requests}
            assert hosts <= LOCAL_HOSTS, hosts
    finally:
        alice.close()
        bob.close()


@pytest.mark.django_db(transaction=True)
def test_a_page_of_a_disallowed_origin_gets_nothing(chromium: Any, stack: dict[str, Any]) -> None:
    server, site = stack["server"], stack["site"]
    channel = webchat_channel_create(origins=[f"http://127.0.0.1:{site.port}"])
    site.embed(app=server.url, channel_id=str(channel.pk))
    # The same page from another origin (localhost is not 127.0.0.1 to a browser).
    mallory = Visitor(chromium, "mallory")
    try:
        mallory.page.goto(f"http://localhost:{site.port}/")
        mallory.open_chat()
        mallory.send("let me in")
        mallory.page.wait_for_function(
            "document.querySelector('[data-webchat]').shadowRoot.querySelector('.status').textContent !== ''"
        )
        # The browser is refused at the preflight (403, no CORS headers): the session never
        # reaches the page, so neither does any message.
        assert any(url.endswith("/session") for url in mallory.failed), mallory.failed
        assert not any(url.endswith("/session") and status == 200 for url, status in mallory.statuses)
        assert "Could not send" in mallory.page.locator(".status").inner_text()
        mallory.shot("webchat-06-disallowed-origin")
        assert not Message.objects.filter(channel_id=channel.pk).exists()
    finally:
        mallory.close()


@pytest.mark.django_db(transaction=True)
def test_the_operator_opens_the_web_chat_from_the_admin(chromium: Any, stack: dict[str, Any], staff_user: Any) -> None:
    from tests.browser.conftest import log_in

    server = stack["server"]
    channel = webchat_channel_create(origins=["https://shop.example.com"])
    operator = Visitor(chromium, "operator")
    try:
        log_in(operator.page, server.url, staff_user.username)
        operator.page.goto(f"{server.url}/admin/channels_app/channel/{channel.pk}/change/")
        panel = operator.page.locator("#connect-panel")
        assert f'data-channel="{channel.pk}"' in panel.locator("#connect-webchat-snippet").inner_text()
        assert "https://shop.example.com" in panel.inner_text()
        operator.shot("webchat-07-admin-panel")
        with operator.context.expect_page() as opened:
            operator.page.click("#connect-webchat-try")
        operator.page = opened.value
        operator.page.wait_for_selector("div.window:not([hidden])")  # opens by itself
        operator.send("Hello from the admin")
        assert operator.wait_for_bubbles(1, "assistant")[0].endswith("Hello from the admin")
        operator.shot("webchat-08-try-page")
        [message] = Message.objects.filter(channel_id=channel.pk, role="USER")
        assert message.dialogue.chat_id.startswith("web-tryuser")
    finally:
        operator.close()
