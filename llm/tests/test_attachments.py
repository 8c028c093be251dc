"""Files sent with a message, as the LLM is given them: image parts for a bot with `vision`
(OpenAI's chat-completions form), a line of text per file otherwise. Asserted on what a real local
chat-completions server received (tests/support/chat_completions.py)."""

from __future__ import annotations

import pytest
from django.test import override_settings

from chatbots.models import ChatBot
from llm.attachments import human_size, item_text
from llm.client import HistoryItem, llm_reply_generate
from llm.openai_backend import EMPLOYEE_PREFIX
from llm.types import history_item
from tests.support.chat_completions import ChatCompletionsServer

PHOTO = {"url": "https://files.example.com/photo.jpg", "mime_type": "image/jpeg", "name": "photo.jpg", "size": 183204}
PDF = {"url": "https://files.example.com/invoice.pdf", "mime_type": "application/pdf", "name": "invoice.pdf",
       "size": 1_250_000}  # fmt: skip
SVG = {"url": "https://files.example.com/logo.svg", "mime_type": "image/svg+xml", "name": "logo.svg", "size": 900}

PHOTO_LINE = "[The customer sent a file: photo.jpg (image/jpeg, 178.9 KB)]"
PDF_LINE = "[The customer sent a file: invoice.pdf (application/pdf, 1.2 MB)]"
SVG_LINE = "[The customer sent a file: logo.svg (image/svg+xml, 900 bytes)]"


def _history() -> list[HistoryItem]:
    return [
        history_item(role="USER", text="Hello"),
        history_item(role="ASSISTANT", text="Hi! How can I help?"),
        history_item(role="USER", text="It arrived broken, see:", attachments=[PHOTO, PDF, SVG]),
    ]


def test_a_vision_bot_gets_images_as_image_parts_and_other_files_as_lines(llm_server: ChatCompletionsServer) -> None:
    llm_reply_generate(chat_bot=ChatBot(name="Eyes", vision=True), history=_history())

    (request,) = llm_server.requests
    assert request.json["messages"] == [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi! How can I help?"},
        {
            "role": "user",
            "content": [
                # The svg is an image the providers refuse: described like any file.
                {"type": "text", "text": f"It arrived broken, see:\n{PDF_LINE}\n{SVG_LINE}"},
                {"type": "image_url", "image_url": {"url": PHOTO["url"]}},
            ],
        },
    ]


def test_a_bot_without_vision_gets_a_line_per_file(llm_server: ChatCompletionsServer) -> None:
    llm_reply_generate(chat_bot=ChatBot(name="Blind"), history=_history())

    (request,) = llm_server.requests
    assert request.json["messages"][-1] == {
        "role": "user",
        "content": f"It arrived broken, see:\n{PHOTO_LINE}\n{PDF_LINE}\n{SVG_LINE}",
    }
    assert "image_url" not in request.body.decode()
    assert PHOTO["url"] not in request.body.decode()  # a model that cannot see is not given the link


def test_images_only_on_a_vision_bot_send_no_empty_text_part(llm_server: ChatCompletionsServer) -> None:
    history = [history_item(role="USER", text="", attachments=[PHOTO, {**PHOTO, "url": "https://f.example/2.png",
                                                                        "mime_type": "IMAGE/PNG"}])]  # fmt: skip
    llm_reply_generate(chat_bot=ChatBot(name="Eyes", vision=True), history=history)

    assert llm_server.requests[0].json["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": PHOTO["url"]}},
                {"type": "image_url", "image_url": {"url": "https://f.example/2.png"}},
            ],
        }
    ]


def test_an_employees_files_are_said_to_be_the_employees(llm_server: ChatCompletionsServer) -> None:
    history = [history_item(role="EMPLOYEE", text="Here is the form", attachments=[{"url": "https://f.example/x"}])]
    llm_reply_generate(chat_bot=None, history=history)
    assert llm_server.requests[0].json["messages"][-1] == {
        "role": "user",
        "name": "employee",
        "content": EMPLOYEE_PREFIX + "Here is the form\n[The employee sent a file: unnamed file (unknown type, "
        "unknown size)]",
    }


def test_a_message_without_files_is_sent_exactly_as_before(llm_server: ChatCompletionsServer) -> None:
    item = history_item(role="USER", text="hi", attachments=[])
    assert item == {"role": "USER", "text": "hi"}  # no key at all: custom backends see no change
    llm_reply_generate(chat_bot=ChatBot(name="Eyes", vision=True), history=[item])
    assert llm_server.requests[0].json["messages"] == [{"role": "user", "content": "hi"}]


received: list[list[HistoryItem]] = []


def recording_llm(history: list[HistoryItem]) -> str:
    received.append(history)
    return "ok"


@override_settings(LLM_BACKEND="llm.tests.test_attachments.recording_llm")
def test_a_custom_backend_gets_the_files_in_the_history_item() -> None:
    received.clear()
    llm_reply_generate(chat_bot=ChatBot(name="Custom", vision=True), history=_history())
    [history] = received
    assert history[0] == {"role": "USER", "text": "Hello"}
    assert history[-1] == {"role": "USER", "text": "It arrived broken, see:", "attachments": [PHOTO, PDF, SVG]}


def test_the_mock_reads_files_as_a_model_without_vision() -> None:
    history = [history_item(role="USER", text="", attachments=[PDF])]
    reply = llm_reply_generate(chat_bot=None, history=history)
    assert reply.backend == "mock" and PDF_LINE in reply.text


@pytest.mark.parametrize(
    ("size", "shown"),
    [(None, "unknown size"), (0, "0 bytes"), (1, "1 byte"), (1023, "1023 bytes"), (1024, "1.0 KB"),
     (1_250_000, "1.2 MB"), (2 * 1024**3, "2.0 GB"), (5 * 1024**4, "5120.0 GB")],
)  # fmt: skip
def test_human_size(size: int | None, shown: str) -> None:
    assert human_size(size) == shown


def test_item_text_without_files_is_the_text() -> None:
    assert item_text({"role": "USER", "text": "plain"}, vision=False) == "plain"
