"""The management API served by the real gunicorn process, as integrators call it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from core.tests.factories import api_token_key
from tests.support.live_server import LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _call(server: LiveServer, method: str, path: str, *, token: str | None, body: Any = None) -> tuple[int, Any]:
    request = urllib.request.Request(server.url + path, method=method)
    if token:
        request.add_header("Authorization", f"Token {token}")
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, data=data, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_token_client_creates_a_bot_and_a_channel(live_server_process: LiveServer, staff_user) -> None:  # type: ignore[no-untyped-def]
    token = api_token_key(staff_user)

    status, body = _call(live_server_process, "GET", "/api/channels", token=None)
    assert status == 401 and body == {"detail": "Authentication credentials were not provided."}

    status, bot = _call(live_server_process, "POST", "/api/chatbots/", token=token, body={"name": "E2E bot"})
    assert status == 201 and bot["secret_token"].startswith(bot["secret_prefix"])

    status, channel = _call(
        live_server_process,
        "POST",
        "/api/channels/",
        token=token,
        body={"name": "E2E channel", "chat_bot_id": bot["id"], "url": "https://receiver.example/hook"},
    )
    assert status == 201, channel
    keys = {"id", "name", "chat_bot_id", "url", "kind", "options", "is_active", "typing_events", "token"}
    assert set(channel) == keys | {"signing_secret"}
    assert channel["chat_bot_id"] == bot["id"] and channel["is_active"] is True
    assert channel.pop("signing_secret").startswith("whsec_")  # shown in this answer only

    status, listed = _call(live_server_process, "GET", f"/api/channels?chat_bot_id={bot['id']}", token=token)
    assert status == 200 and listed == [channel]
    status, fetched = _call(live_server_process, "GET", f"/api/channels/{channel['id']}", token=token)
    assert status == 200 and fetched == channel
    status, history = _call(live_server_process, "GET", f"/api/channels/{channel['id']}/dialogue", token=token)
    assert status == 200 and history["message_list"] == []

    status, error = _call(live_server_process, "GET", "/api/channels/not-an-id", token=token)
    assert status == 404 and error == {"detail": "Not found."}
    status, error = _call(
        live_server_process, "POST", "/api/channels/", token=token, body={"name": "x", "chat_bot_id": "bad", "url": "x"}
    )
    assert status == 400 and {"chat_bot_id", "url"} <= set(error)
