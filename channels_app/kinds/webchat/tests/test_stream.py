"""The stream process, started as `make run` starts it: an event written by the kind's send
reaches the connected widget of its conversation, and no one else."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from channels_app.kinds import kind_get
from channels_app.kinds.webchat.tests.factories import SITE, webchat_channel_create
from channels_app.kinds.webchat.tests.processes import StreamProcess
from channels_app.kinds.webchat.visitors import Visitor, visitor_new, visitor_token

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def stream_process(django_db_setup: Any) -> Iterator[StreamProcess]:  # the test database first
    process = StreamProcess()
    yield process
    process.stop()


class SSEClient:
    """One EventSource, as a browser opens it."""

    def __init__(self, port: int, channel_id: str, token: str, origin: str | None = SITE) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"Accept": "text/event-stream"}
        if origin:
            headers["Origin"] = origin
        self.connection.request("GET", f"/channels/webchat/{channel_id}/stream?visitor={token}", headers=headers)
        self.sock = self.connection.sock
        self.response = self.connection.getresponse()
        self.events: list[dict[str, Any]] = []
        if self.response.status == 200:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            while True:
                line = self.response.fp.readline()
                if not line:
                    return
                if line.startswith(b"data: "):
                    self.events.append(json.loads(line[6:]))
        except (OSError, ValueError):
            return

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.events

    def close(self) -> None:
        # Unblocks the reader first (closing the response waits for its read otherwise).
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.connection.close()


def _connected(stream_process: StreamProcess, count: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", stream_process.port, timeout=5)
        connection.request("GET", "/healthz")
        if json.loads(connection.getresponse().read())["connections"] >= count:
            return
        time.sleep(0.05)
    raise AssertionError("the stream never counted the connections")


def test_an_event_reaches_its_visitors_open_widgets_only(stream_process: StreamProcess) -> None:
    channel = webchat_channel_create(origins=[SITE])
    alice, bob = visitor_new(), visitor_new()
    alice_tab_1 = SSEClient(stream_process.port, str(channel.pk), visitor_token(str(channel.pk), alice))
    alice_tab_2 = SSEClient(stream_process.port, str(channel.pk), visitor_token(str(channel.pk), alice), origin=None)
    bob_tab = SSEClient(stream_process.port, str(channel.pk), visitor_token(str(channel.pk), bob))
    try:
        assert alice_tab_1.response.status == 200
        assert alice_tab_1.response.getheader("Content-Type", "").startswith("text/event-stream")
        assert alice_tab_1.response.getheader("Access-Control-Allow-Origin") == SITE
        _connected(stream_process, 3)
        payload = {
            "type": "message",
            "message_id": "reply-1",
            "role": "ASSISTANT",
            "text": "Hi <b>Alice</b>",
            "chat_id": alice.chat_id,
        }
        sent_at = time.monotonic()
        for _ in range(2):  # a retried delivery shows once
            assert kind_get("webchat").send(channel=channel, payload=payload, idempotency_key="k-1", log_context={}).ok
        expected = {"type": "message", "id": "reply-1", "role": "assistant", "text": "Hi <b>Alice</b>"}
        assert alice_tab_1.wait_for(1) == [expected]
        assert alice_tab_2.wait_for(1) == [expected]
        delivered_in = time.monotonic() - sent_at
        time.sleep(0.6)  # two more polls: nothing else comes, to anyone
        assert len(alice_tab_1.events) == 1 and len(alice_tab_2.events) == 1 and bob_tab.events == []
        print(f"delivered in {delivered_in:.3f} s")  # noqa: T201 - reported, not asserted
    finally:
        for client in (alice_tab_1, alice_tab_2, bob_tab):
            client.close()


def test_the_stream_refuses_bad_tokens_origins_and_channels(stream_process: StreamProcess) -> None:
    channel = webchat_channel_create(origins=[SITE])
    other = webchat_channel_create(origins=[SITE])
    token = visitor_token(str(channel.pk), visitor_new())
    cases = [
        (str(channel.pk), token, "https://evil.example", 403),
        (str(channel.pk), "garbage", SITE, 401),
        (str(channel.pk), visitor_token(str(other.pk), Visitor(id="abcdefgh12345")), SITE, 401),
        ("0" * 24, token, SITE, 404),
        ("not-an-id", token, SITE, 404),
    ]
    for channel_id, visitor, origin, status in cases:
        client = SSEClient(stream_process.port, channel_id, visitor, origin=origin)
        try:
            assert client.response.status == status, (channel_id, origin)
            assert "detail" in json.loads(client.response.read())
            if status == 403:
                assert client.response.getheader("Access-Control-Allow-Origin") is None
        finally:
            client.close()
