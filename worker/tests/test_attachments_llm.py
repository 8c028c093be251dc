"""A customer's files, from the webhook to the LLM, through the real worker: what a real local
chat-completions server received for a bot with `vision` and for one without."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from channels_app.tests.factories import ChannelFactory
from chatbots.tests.factories import ChatBotFactory
from devtools.receiver import ChannelReceiver
from dialogues.models import Message
from dialogues.tests.conftest import customer_message
from llm.tests.conftest import llm_server  # noqa: F401
from tests.support.chat_completions import ChatCompletionsServer

pytestmark = pytest.mark.django_db

Drain = Callable[[], None]

PHOTO = {"url": "https://files.example.com/photo.png", "mime_type": "image/png", "name": "photo.png", "size": 2048}
PDF = {"url": "https://files.example.com/order.pdf", "mime_type": "application/pdf", "name": "order.pdf", "size": 10}


@pytest.mark.parametrize("vision", [True, False])
def test_the_llm_gets_the_customers_files_from_the_stored_message(
    llm_server: ChatCompletionsServer,  # noqa: F811
    receiver: ChannelReceiver,
    drain: Drain,
    vision: bool,
) -> None:
    bot = ChatBotFactory(vision=vision)
    channel = ChannelFactory(chat_bot=bot, url=receiver.url)
    client = APIClient(headers={"x-chatbot_auth_token": f"Bearer {bot.plain_secret}"})
    for message_id, text, attachment in (("m-1", "Here it is", PHOTO), ("m-2", "", PDF)):
        body = customer_message(channel, message_id=message_id, text=text, attachments=[attachment])
        response = client.post("/api/webhook/new_message", body, format="json")
        assert response.status_code == 200, response.content
        drain()

    assert len(llm_server.requests) == 2
    messages = llm_server.requests[-1].json["messages"]
    photo_line = "[The customer sent a file: photo.png (image/png, 2.0 KB)]"
    pdf_line = "[The customer sent a file: order.pdf (application/pdf, 10 bytes)]"
    if vision:
        assert messages[0] == {
            "role": "user",
            "content": [
                {"type": "text", "text": "Here it is"},
                {"type": "image_url", "image_url": {"url": PHOTO["url"]}},
            ],
        }
    else:
        assert messages[0] == {"role": "user", "content": f"Here it is\n{photo_line}"}
    assert messages[1]["role"] == "assistant"
    # A file that is no image is described in words, vision or not.
    assert messages[2] == {"role": "user", "content": pdf_line}
    assert Message.objects.filter(role=Message.Role.ASSISTANT, delivery_state="delivered").count() == 2
    assert len(receiver.requests) == 2
