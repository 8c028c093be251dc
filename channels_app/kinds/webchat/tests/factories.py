from __future__ import annotations

from typing import Any

from django.test import Client

from channels_app.kinds import kind_get
from channels_app.models import Channel
from channels_app.services import channel_create_of_kind
from chatbots.models import ChatBot
from chatbots.tests.factories import ChatBotFactory

SITE = "https://shop.example.com"


def webchat_channel_create(
    *, origins: list[str] | None = None, chat_bot: ChatBot | None = None, is_active: bool = True, title: str = ""
) -> Channel:
    kind = kind_get("webchat")
    return channel_create_of_kind(
        chat_bot=chat_bot or ChatBotFactory(),
        name="Web chat",
        kind="webchat",
        config=kind.configure({"allowed_origins": origins or [SITE], "title": title}),
        is_active=is_active,
    )


def widget_api(channel: Channel) -> str:
    return f"/channels/webchat/{channel.pk}"


def session_token(client: Client, channel: Channel, origin: str = SITE) -> str:
    response = client.post(
        f"{widget_api(channel)}/session", data=b"{}", content_type="application/json", HTTP_ORIGIN=origin
    )
    assert response.status_code == 200, response.content
    return str(response.json()["visitor"])


def post_message(client: Client, channel: Channel, token: str, body: Any, origin: str | None = SITE) -> Any:
    import json

    extra: dict[str, str] = {"HTTP_X_WEBCHAT_VISITOR": token}
    if origin is not None:
        extra["HTTP_ORIGIN"] = origin
    # As browsers send it (JSON.stringify): UTF-8, not \\u escapes.
    data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    return client.post(f"{widget_api(channel)}/messages", data=data, content_type="application/json", **extra)
