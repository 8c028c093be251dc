"""The webhook through the real gunicorn process that `make run` starts."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from channels_app.tests.factories import ChannelFactory
from chatbots.tests.factories import ChatBotFactory
from dialogues.models import Message
from tests.support.live_server import LiveServer, WorkerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

WEBHOOK = "/api/webhook/new_message"


def raw_post(server: LiveServer, headers: list[tuple[str, str]], body: bytes) -> tuple[int, dict[str, Any]]:
    """A request written byte by byte, so the header name goes out exactly as given."""
    lines = [f"POST {WEBHOOK} HTTP/1.1", f"Host: 127.0.0.1:{server.port}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", "Connection: close"]  # fmt: skip
    lines += [f"{name}: {value}" for name, value in headers]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, payload = b"".join(chunks).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(payload)


@pytest.fixture
def worker_process(live_server_process: LiveServer) -> Iterator[WorkerProcess]:
    """`manage.py run_worker` beside the session's gunicorn, as `make run` starts it."""
    worker = WorkerProcess(env=live_server_process.env(), name="e2e").start()
    try:
        yield worker
    finally:
        worker.stop()


def test_seed_header_with_underscores_reaches_the_app(
    live_server_process: LiveServer, worker_process: WorkerProcess, receiver
) -> None:
    bot = ChatBotFactory()
    channel = ChannelFactory(chat_bot=bot, url=receiver.url)
    body = json.dumps({"message_id": "raw-1", "chat_id": str(channel.pk), "text": "hi", "message_sender": "customer"})

    status, answer = raw_post(
        live_server_process, [("x-chatbot_auth_token", f"Bearer {bot.plain_secret}")], body.encode()
    )

    assert status == 200, answer
    assert answer["status"] == "Message processed successfully"
    assert answer["reply_pending"] is True and answer["delivery"] is None
    [received] = receiver.wait_for(1, timeout=20)
    assert received.headers["x-chat_auth_token"] == f"Bearer {channel.settings.token}"
    assert received.json["in_reply_to"] == "raw-1"


def test_missing_header_is_401_through_the_server(live_server_process: LiveServer) -> None:
    status, answer = raw_post(live_server_process, [], b"{}")
    assert status == 401
    assert answer == {"detail": "x-chatbot_auth_token header is required"}


def test_http_client_with_the_seed_header(live_server_process: LiveServer, receiver) -> None:
    bot = ChatBotFactory()
    channel = ChannelFactory(chat_bot=bot, url=receiver.url)
    connection = http.client.HTTPConnection("127.0.0.1", live_server_process.port, timeout=30)
    body = json.dumps({"chat_id": str(channel.pk), "text": "hello", "message_sender": "employee"})
    connection.request(
        "POST", WEBHOOK, body=body,
        headers={"x-chatbot_auth_token": f"Bearer {bot.plain_secret}", "Content-Type": "application/json"},
    )  # fmt: skip
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()
    assert response.status == 200, answer
    assert answer["ignored"] is True
    assert Message.objects.get().role == Message.Role.EMPLOYEE


def test_twenty_identical_requests_at_once_store_one_copy_and_post_once(
    live_server_process: LiveServer, worker_process: WorkerProcess, receiver
) -> None:
    bot = ChatBotFactory()
    channel = ChannelFactory(chat_bot=bot, url=receiver.url)
    body = json.dumps(
        {"message_id": "dup-1", "chat_id": str(channel.pk), "text": "once", "message_sender": "customer"}
    ).encode()
    headers = [("x-chatbot_auth_token", f"Bearer {bot.plain_secret}")]
    barrier = threading.Barrier(20)
    results: list[Any] = [None] * 20

    def send(index: int) -> None:
        barrier.wait()
        try:
            results[index] = raw_post(live_server_process, headers, body)
        except Exception as exc:  # noqa: BLE001 - asserted below
            results[index] = exc

    threads = [threading.Thread(target=send, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert all(isinstance(r, tuple) and r[0] == 200 for r in results), results
    assert sum(1 for _, answer in results if not answer["duplicate"]) == 1
    assert all(answer["resumed"] is False for _, answer in results)
    assert Message.objects.filter(message_id="dup-1").count() == 1
    assert len(receiver.wait_for(1, timeout=20)) == 1
    receiver.wait_for(2, timeout=1.0)  # give a wrongful second POST the chance to show up
    assert len(receiver.requests) == 1
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert receiver.requests[0].json["in_reply_to"] == "dup-1"
    assert receiver.requests[0].headers["webhook-id"] == reply.message_id
    assert reply.delivery_state == "delivered"


def test_chunked_body_is_read_through_the_server(live_server_process: LiveServer, receiver) -> None:
    """A channel that streams its body (Transfer-Encoding: chunked, no Content-Length) is
    served like any other; Django alone would read such a body as empty."""
    bot = ChatBotFactory()
    channel = ChannelFactory(chat_bot=bot, url=receiver.url)
    body = json.dumps(
        {"message_id": "chunked-1", "chat_id": str(channel.pk), "text": "hi", "message_sender": "customer"}
    )
    connection = http.client.HTTPConnection("127.0.0.1", live_server_process.port, timeout=30)
    connection.request(
        "POST", WEBHOOK, body=iter([body[:10].encode(), body[10:].encode()]), encode_chunked=True,
        headers={"x-chatbot_auth_token": f"Bearer {bot.plain_secret}", "Content-Type": "application/json",
                 "Transfer-Encoding": "chunked"},
    )  # fmt: skip
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()

    assert response.status == 200, answer
    assert answer["message_id"] == "chunked-1" and answer["reply_pending"] is True
    assert Message.objects.get(message_id="chunked-1").text == "hi"


@pytest.mark.parametrize(
    "chunks",
    [
        b"zz\r\n{}\r\n0\r\n\r\n",  # a chunk size that is not hexadecimal
        b"5\r\n{}{}{}{}\r\n0\r\n\r\n",  # a chunk longer than its size, no terminator where due
        b"5\r\n{}",  # the body ends inside a chunk
    ],
    ids=["bad-size", "bad-terminator", "cut-short"],
)
def test_malformed_chunked_body_with_the_right_secret_is_a_400(live_server_process: LiveServer, chunks: bytes) -> None:
    """gunicorn raises its own parse errors from the body stream; the webhook answers them as
    a malformed body (400 JSON), never a 500 with a traceback in the log."""
    bot = ChatBotFactory()
    head = [f"POST {WEBHOOK} HTTP/1.1", f"Host: 127.0.0.1:{live_server_process.port}",
            "Content-Type: application/json", "Transfer-Encoding: chunked", "Connection: close",
            f"x-chatbot_auth_token: Bearer {bot.plain_secret}"]  # fmt: skip
    with socket.create_connection(("127.0.0.1", live_server_process.port), timeout=30) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + chunks)
        sock.shutdown(socket.SHUT_WR)  # the client has sent all it will
        received = []
        while chunk := sock.recv(65536):
            received.append(chunk)
    answer_head, _, payload = b"".join(received).partition(b"\r\n\r\n")
    assert int(answer_head.split(b" ", 2)[1]) == 400, answer_head + payload
    assert b"application/json" in answer_head.lower()
    assert json.loads(payload)["detail"].startswith("Malformed request body")
    assert "Traceback" not in live_server_process.log_text()
