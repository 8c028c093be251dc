"""The bot asks for a human, through the real webhook, the real worker (in this process), a real
local chat-completions server and a real receiver playing the channel: a hand-off keyword, or the
model calling the `handoff_to_human` tool, makes the bot send its hand-off text, pause in the
dialogue, and record why."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from channels_app.tests.factories import ChannelFactory
from chatbots.models import HANDOFF_TEXT_DEFAULT
from chatbots.tests.factories import ChatBotFactory
from devtools.receiver import ChannelReceiver
from dialogues.models import PAUSED_INDEFINITELY, Dialogue, Message
from dialogues.tests.conftest import customer_message
from llm.tests.conftest import llm_server  # noqa: F401
from tests.support.chat_completions import ChatCompletionsServer, ChatReply

pytestmark = pytest.mark.django_db

Drain = Callable[[], None]


def tool_call_body(reason: str) -> bytes:
    """A chat completion whose answer is a call of `handoff_to_human` (OpenAI's shape)."""
    return json.dumps(
        {
            "id": "chatcmpl-tool",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "platform-model",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "handoff_to_human", "arguments": json.dumps({"reason": reason})},
                            }
                        ],
                    },
                    "finish_reason": "tool_calls",
                }
            ],
            "usage": {"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39},
        }
    ).encode()


def _post(bot, channel, message_id: str, text: str) -> None:  # type: ignore[no-untyped-def]
    client = APIClient(headers={"x-chatbot_auth_token": f"Bearer {bot.plain_secret}"})
    response = client.post(
        "/api/webhook/new_message", customer_message(channel, message_id=message_id, text=text), format="json"
    )
    assert response.status_code == 200, response.content


def test_a_keyword_hands_off_without_asking_the_llm(
    llm_server: ChatCompletionsServer,  # noqa: F811
    receiver: ChannelReceiver,
    drain: Drain,
) -> None:
    bot = ChatBotFactory(handoff_keywords="operator, человек, оператор", handoff_text="Зову оператора.")
    channel = ChannelFactory(chat_bot=bot, url=receiver.url)
    _post(bot, channel, "m-1", "Hello")
    drain()
    _post(bot, channel, "m-2", "Позовите ОПЕРАТОРА, пожалуйста")
    drain()
    _post(bot, channel, "m-3", "Are you there?")
    drain()

    assert len(llm_server.requests) == 1  # only the first message went to the model
    texts = [request.json["text"] for request in receiver.requests]
    assert texts[-1] == "Зову оператора." and len(texts) == 2  # the third is not answered: paused
    dialogue = Dialogue.objects.get(channel_id=channel.pk)
    assert dialogue.paused_until == PAUSED_INDEFINITELY
    assert "оператор" in dialogue.handoff_reason and dialogue.handoff_requested_at is not None
    third = Message.objects.get(dialogue_id=dialogue.pk, message_id="m-3")
    assert third.reply_state == Message.ReplyState.PAUSED


def test_the_model_calling_the_handoff_tool_hands_off_with_its_reason(
    llm_server: ChatCompletionsServer,  # noqa: F811
    receiver: ChannelReceiver,
    drain: Drain,
) -> None:
    bot = ChatBotFactory(handoff_tool=True)
    channel = ChannelFactory(chat_bot=bot, url=receiver.url)
    llm_server.then(ChatReply(body=tool_call_body("wants a refund")))
    _post(bot, channel, "m-1", "I want my money back")
    drain()

    sent = llm_server.requests[0].json
    assert [tool["function"]["name"] for tool in sent["tools"]] == ["handoff_to_human"]
    assert [request.json["text"] for request in receiver.requests] == [HANDOFF_TEXT_DEFAULT]
    dialogue = Dialogue.objects.get(channel_id=channel.pk)
    assert dialogue.handoff_reason == "wants a refund" and dialogue.paused_until == PAUSED_INDEFINITELY
    reply = Message.objects.get(dialogue_id=dialogue.pk, role=Message.Role.ASSISTANT)
    assert reply.delivery_state == "delivered" and reply.in_reply_to == "m-1"


def test_without_the_setting_no_tool_is_offered_and_no_keyword_matches(
    llm_server: ChatCompletionsServer,  # noqa: F811
    receiver: ChannelReceiver,
    drain: Drain,
) -> None:
    bot = ChatBotFactory(handoff_keywords="operator")
    channel = ChannelFactory(chat_bot=bot, url=receiver.url)
    _post(bot, channel, "m-1", "Is the cooperator model in stock?")
    drain()
    assert "tools" not in llm_server.requests[0].json
    dialogue = Dialogue.objects.get(channel_id=channel.pk)
    assert not dialogue.handoff_reason and dialogue.paused_until is None
    assert len(receiver.requests) == 1
