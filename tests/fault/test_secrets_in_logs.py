"""No bot secret and no channel token in anything the server logs, at debug level with the
access log on, across a full round trip: create through the API, webhook, delivery,
a failed delivery, deliver_pending, a wrong secret."""

from __future__ import annotations

import time

import pytest
import requests

from core.tests.factories import api_token_key
from devtools.receiver import ChannelReceiver, Reply
from tests.fault.conftest import SEED_HEADER, WEBHOOK, manage
from tests.support.live_server import LiveServer, WorkerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_no_secret_or_token_in_captured_logs(fault_server: LiveServer, receiver: ChannelReceiver, staff_user) -> None:  # type: ignore[no-untyped-def]
    api = {"Authorization": f"Token {api_token_key(staff_user)}"}
    log_start = len(fault_server.log_text())

    bot = requests.post(fault_server.url + "/api/chatbots/", json={"name": "Secretive"}, headers=api, timeout=30)
    assert bot.status_code == 201, bot.text
    secret = bot.json()["secret_token"]
    channel = requests.post(
        fault_server.url + "/api/channels/",
        json={"name": "c", "chat_bot_id": bot.json()["id"], "url": receiver.url, "is_active": True},
        headers=api,
        timeout=30,
    )
    assert channel.status_code == 201, channel.text
    token = channel.json()["token"]
    chat_id = channel.json()["id"]

    def send(message_id: str, headers: dict[str, str]) -> requests.Response:
        body = {"message_id": message_id, "chat_id": chat_id, "text": "hi", "message_sender": "customer"}
        return requests.post(fault_server.url + WEBHOOK, json=body, headers=headers, timeout=30)

    # The worker, at debug level too, as `make run` starts it beside the server.
    worker = WorkerProcess(env={**fault_server.env(), "LOG_LEVEL": "debug"}, name="secrets").start()
    try:
        # Delivered by the worker, with each accepted header form.
        assert send("s-1", {SEED_HEADER: f"Bearer {secret}"}).json()["reply_pending"] is True
        assert send("s-2", {"X-Chatbot-Auth-Token": f"Bearer {secret}"}).status_code == 200
        assert send("s-3", {"Authorization": f"Bearer {secret}"}).status_code == 200
        received = receiver.wait_for(3)
        assert received[0].headers["x-chat_auth_token"] == f"Bearer {token}"
        # A failing channel (error paths log more), then the operator's deliver_pending.
        receiver.default = Reply(status=500, body=b'{"error": "boom"}')
        assert send("s-4", {SEED_HEADER: f"Bearer {secret}"}).status_code == 200
        receiver.wait_for(4)
    finally:
        worker.stop()
    receiver.default = Reply()
    pending = manage("deliver_pending", env={"LOG_LEVEL": "debug"})
    assert pending.returncode == 0, pending.stderr
    # Wrong, near-miss and malformed secrets.
    near_miss = secret[:-2] + ("AA" if not secret.endswith("AA") else "BB")
    assert send("s-5", {SEED_HEADER: f"Bearer {near_miss}"}).status_code == 401
    assert send("s-6", {SEED_HEADER: secret}).status_code == 401
    assert send("s-7", {SEED_HEADER: f"Token {secret}"}).status_code == 401

    time.sleep(0.3)
    log = fault_server.log_text()[log_start:]
    # The logs did capture this traffic (so the absence below means something).
    assert "s-1" in log
    assert "/api/webhook/new_message" in log
    for leaked, name in ((secret, "bot secret"), (near_miss, "near-miss secret"), (token, "channel token")):
        assert leaked not in log, f"{name} found in the gunicorn log"
        assert leaked not in pending.stdout + pending.stderr, f"{name} found in deliver_pending's output"
        assert leaked not in worker.log_text(), f"{name} found in the worker's log"
    # Also no long fragment of them (a truncated secret is still most of a secret).
    for leaked in (secret, token):
        assert leaked[4:24] not in log
