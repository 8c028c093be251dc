"""A customer's files on the dialogue page, in a real browser against the real gunicorn server:
shown as links (name, type, size) and never loaded by the page itself. An image of the
customer's URL, a background or a prefetch would tell the file's host that, and when, an
operator read the chat. Screenshots land in test-artifacts/browser/."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from channels_app.tests.factories import ChannelFactory
from chatbots.tests.factories import ChatBotFactory
from dialogues.models import Dialogue
from tests.browser.conftest import log_in
from tests.support.live_server import LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# A reserved name (RFC 2606): never resolves, so even a request made would reach no one; the
# browser still reports any attempt to the page's request listener.
FILES_HOST = "files.attachments.test"
PHOTO_URL = f"https://{FILES_HOST}/u/42/photo.png?sig=abc&exp=1"
PDF_URL = f"https://{FILES_HOST}/u/42/order.pdf"

# Every attribute and computed style that names the files' host, anywhere in the document,
# other than a link's href.
_LOADERS = """(host) => {
  const hits = [];
  for (const el of document.querySelectorAll('*')) {
    for (const attr of el.attributes) {
      if (attr.value.includes(host) && !(el.tagName === 'A' && attr.name === 'href')) {
        hits.push(`${el.tagName} ${attr.name}`);
      }
    }
    for (const pseudo of [null, '::before', '::after']) {
      const style = getComputedStyle(el, pseudo);
      for (const prop of ['backgroundImage', 'content', 'listStyleImage', 'borderImageSource', 'maskImage']) {
        if ((style[prop] || '').includes(host)) hits.push(`${el.tagName}${pseudo || ''} ${prop}`);
      }
    }
  }
  return hits;
}"""


def test_the_transcript_shows_files_as_links_and_never_loads_them(
    page: Any, screenshot: Any, live_server_process: LiveServer, staff_user: Any
) -> None:
    bot = ChatBotFactory(name="Files bot")
    channel = ChannelFactory(chat_bot=bot, name="Files channel")
    response = requests.post(
        f"{live_server_process.url}/api/webhook/new_message",
        headers={"x-chatbot_auth_token": f"Bearer {bot.plain_secret}"},
        json={
            "chat_id": str(channel.pk),
            "message_id": "m-files",
            "message_sender": "customer",
            "text": "It came like this",
            "attachments": [
                {"url": PHOTO_URL, "mime_type": "image/png", "name": "photo.png", "size": 2_411_724},
                {"url": PDF_URL, "mime_type": "application/pdf", "name": "order.pdf", "size": 512},
            ],
        },
        timeout=30,
    )
    assert response.status_code == 200, response.text
    dialogue = Dialogue.objects.get(channel=channel)

    base = live_server_process.url
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url))
    log_in(page, base, staff_user.username)
    page.goto(f"{base}/admin/dialogues/dialogue/{dialogue.pk}/change/")
    page.wait_for_load_state("networkidle")

    bubble = page.locator("ol.transcript li.bubble").first
    assert "It came like this" in bubble.inner_text()
    photo = bubble.locator("a.attachment-link", has_text="photo.png")
    assert photo.count() == 1
    assert photo.get_attribute("href") == PHOTO_URL
    assert photo.get_attribute("target") == "_blank"
    assert photo.get_attribute("rel") == "noopener noreferrer nofollow"
    assert photo.get_attribute("referrerpolicy") == "no-referrer"
    items = bubble.locator("li.attachment")
    assert [items.nth(n).inner_text().replace("\xa0", " ") for n in range(items.count())] == [
        "photo.png (image/png, 2.3 MB)",
        "order.pdf (application/pdf, 512 bytes)",
    ]
    # The history table below lists the same links.
    assert page.locator("#history a.attachment-link").count() == 2
    screenshot("attachments-01-transcript")

    # Nothing on the page loads the customer's URLs: no <img> or other element names them
    # but the links' href, no style points at them, and the browser asked for none of them,
    # even after the transcript's own refresh (it polls for new messages).
    assert page.locator(f"img[src*='{FILES_HOST}'], img[srcset*='{FILES_HOST}']").count() == 0
    assert page.evaluate(_LOADERS, FILES_HOST) == []
    page.wait_for_timeout(3_000)
    page.wait_for_load_state("networkidle")
    assert page.evaluate(_LOADERS, FILES_HOST) == []
    resources = page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
    assert not [url for url in [*seen, *resources] if FILES_HOST in url]
    assert seen, "the request listener saw the page's own requests"
    assert page.locator("meta[http-equiv='x-dns-prefetch-control']").get_attribute("content") == "off"
