"""A signed webhook request through the real gunicorn process: the signature is checked over the
bytes gunicorn hands the app, so a tampered byte is refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from channels_app.tests.factories import ChannelFactory
from chatbots.services import SIGNATURE_INVALID
from chatbots.tests.factories import ChatBotFactory
from dialogues.models import Message
from tests.e2e.test_webhook_server import raw_post
from tests.support.live_server import LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_signed_request_passes_and_a_tampered_one_is_401(live_server_process: LiveServer, receiver) -> None:
    bot = ChatBotFactory(require_signed_webhooks=True)
    channel = ChannelFactory(chat_bot=bot, url=receiver.url)
    body = json.dumps(
        {"message_id": "signed-1", "chat_id": str(channel.pk), "text": "hi é", "message_sender": "customer"},
        ensure_ascii=False,
    ).encode()
    now = datetime.now(tz=UTC)

    def headers(webhook_id: str) -> list[tuple[str, str]]:
        signature = Webhook(bot.webhook_signing_secret).sign(msg_id=webhook_id, timestamp=now, data=body.decode())
        return [
            ("x-chatbot_auth_token", f"Bearer {bot.plain_secret}"),
            ("webhook-id", webhook_id),
            ("webhook-timestamp", str(int(now.timestamp()))),
            ("webhook-signature", signature),
        ]

    status, answer = raw_post(live_server_process, headers("msg_e2e_1"), body)
    tampered_status, tampered = raw_post(live_server_process, headers("msg_e2e_2"), body.replace(b"hi", b"ho"))

    assert status == 200, answer
    assert tampered_status == 401 and tampered == {"detail": SIGNATURE_INVALID}
    assert list(Message.objects.filter(role=Message.Role.USER).values_list("text", flat=True)) == ["hi é"]
