"""A message's files on the operators' dialogue page: links with their name, type and size, and
never anything that would load the customer's URL by itself (an image, a background, a
prefetch): the file's host would learn that, and when, someone read the chat."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from dialogues.models import Attachment, Message
from dialogues.store.collections import messages_collection
from dialogues.tests.conftest import customer_message
from dialogues.tests.factories import DialogueFactory, MessageFactory

pytestmark = pytest.mark.django_db

PHOTO_URL = "https://files.example.com/u/42/photo.jpg?sig=a&b=c"


@pytest.fixture
def admin_client(client: Client, staff_user) -> Client:  # type: ignore[no-untyped-def]
    client.force_login(staff_user)
    return client


def _links(page: str, url: str) -> list[str]:
    escaped = url.replace("&", "&amp;")
    return re.findall(rf'<a [^>]*href="{re.escape(escaped)}"[^>]*>', page)


def test_the_dialogue_page_shows_attachments_as_links_and_never_loads_them(admin_client: Client) -> None:
    dialogue = DialogueFactory()
    MessageFactory(
        dialogue=dialogue,
        text="",
        attachments=[
            Attachment(url=PHOTO_URL, mime_type="image/jpeg", name="photo.jpg", size=183_204),
            Attachment(url="https://files.example.com/u/42/notes"),
        ],
    )

    for url in (
        reverse("admin:dialogues_dialogue_change", args=[dialogue.pk]),
        reverse("admin:dialogues_dialogue_transcript", args=[dialogue.pk]),
    ):
        page = admin_client.get(url).content.decode()

        # In the transcript and in the history table (the fragment holds the transcript only).
        links = _links(page, PHOTO_URL)
        assert len(links) == (2 if url.endswith("/change/") else 1), links
        for link in links:
            assert 'target="_blank"' in link
            assert 'rel="noopener noreferrer nofollow"' in link
            assert 'referrerpolicy="no-referrer"' in link
        assert "photo.jpg" in page and "image/jpeg" in page and "178.9\xa0KB" in page
        assert "unnamed file" in page and "unknown type" in page and "unknown size" in page
        # The URL appears in links' href only: no src, srcset, poster, style or <link>.
        escaped = PHOTO_URL.replace("&", "&amp;")
        assert page.count(escaped) == len(links)
        notes = _links(page, "https://files.example.com/u/42/notes")
        assert page.count("files.example.com") == len(links) + len(notes) == 2 * len(links)
        assert not re.search(r"<(img|source|video|audio|iframe|link)\b[^>]*files\.example\.com", page)


def test_an_attachment_url_that_is_not_https_is_not_a_link(admin_client: Client) -> None:
    message = MessageFactory(text="hi")
    # Written some other way than the webhook, which refuses it.
    messages_collection().update_one(
        {"_id": message.pk},
        {"$set": {"attachments": [{"url": "javascript:alert(1)", "mime_type": None, "name": "x", "size": None}]}},
    )
    page = admin_client.get(reverse("admin:dialogues_dialogue_change", args=[message.dialogue_id])).content.decode()
    assert "javascript:alert(1)" not in page
    assert 'class="attachment-name">x<' in page


def test_the_list_previews_a_message_of_files_only(admin_client: Client, channel, post_webhook) -> None:
    files = [{"url": "https://f.example/a"}, {"url": "https://f.example/b"}]
    assert post_webhook(customer_message(channel, text="", attachments=files)).status_code == 200
    page = admin_client.get(reverse("admin:dialogues_dialogue_changelist")).content.decode()
    assert "[2 files]" in page


def test_messages_stored_before_attachments_existed_still_show(admin_client: Client) -> None:
    message = MessageFactory(text="an old message")
    messages_collection().update_one({"_id": message.pk}, {"$unset": {"attachments": ""}})
    assert Message.objects.get(pk=message.pk).attachments is None
    response = admin_client.get(reverse("admin:dialogues_dialogue_change", args=[message.dialogue_id]))
    assert response.status_code == 200
    assert "an old message" in response.content.decode()
