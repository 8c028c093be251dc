"""Hostile input through the real server: a clear 4xx, nothing stored, nothing sent."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from channels_app.models import Channel
from channels_app.tests.factories import ChannelFactory
from chatbots.models import ChatBot
from core.tests.factories import api_token_key
from devtools.receiver import ChannelReceiver
from dialogues.models import Dialogue, Message
from tests.fault.conftest import SEED_HEADER, WEBHOOK
from tests.support.live_server import LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

MIB = 1024 * 1024


@pytest.fixture
def target(fault_server: LiveServer, receiver: ChannelReceiver) -> Iterator[dict[str, Any]]:
    channel = ChannelFactory(url=receiver.url)
    yield {"server": fault_server, "channel": channel, "secret": channel.chat_bot.plain_secret}
    # Whatever the case, nothing may have been stored or sent.
    assert Message.objects.count() == 0
    assert Dialogue.objects.count() == 0
    assert receiver.requests == []


def _valid(channel: Channel, **overrides: Any) -> dict[str, Any]:
    return {"message_id": "m-1", "chat_id": str(channel.pk), "text": "hello", "message_sender": "customer",
            **overrides}  # fmt: skip


def _post_raw(target: dict[str, Any], data: Any, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(
        target["server"].url + WEBHOOK,
        data=data,
        headers={SEED_HEADER: f"Bearer {target['secret']}", "Content-Type": "application/json", **(headers or {})},
        timeout=30,
    )


def _assert_clear_4xx(response: requests.Response, *statuses: int) -> None:
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("application/json")
    assert "detail" in response.json() or response.json()
    assert "Traceback" not in response.text


# --- Bodies --------------------------------------------------------------------------------


def test_body_over_one_mib_is_413(target: dict[str, Any]) -> None:
    body = json.dumps(_valid(target["channel"], text="x" * MIB)).encode()
    _assert_clear_4xx(_post_raw(target, body), 413)


def test_chunked_body_over_one_mib_is_413(target: dict[str, Any]) -> None:
    # No Content-Length: the server must stop reading at the limit by itself.
    def chunks() -> Iterator[bytes]:
        yield b'{"chat_id": "x", "message_sender": "customer", "text": "'
        for _ in range(40):
            yield b"y" * 64 * 1024
        yield b'"}'

    _assert_clear_4xx(_post_raw(target, chunks()), 413)


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deeply_nested_json_is_400(target: dict[str, Any], depth: int) -> None:
    nested = "[" * depth + "]" * depth
    body = f'{{"chat_id": {nested}, "text": "hi", "message_sender": "customer"}}'.encode()
    _assert_clear_4xx(_post_raw(target, body), 400)
    objects = '{"a":' * depth + "1" + "}" * depth
    _assert_clear_4xx(_post_raw(target, objects.encode()), 400)


@pytest.mark.parametrize(
    "body",
    [
        b'{"chat_id": "\xff\xfe", "text": "hi", "message_sender": "customer"}',
        b'{"chat_id": "abc", "text": "\xc3\x28", "message_sender": "customer"}',
        b"\xef\xbb\xbf\xff",
        b'{"chat_id": "a", "text": NaN, "message_sender": "customer"}',
        b'{"chat_id": "a", "text": "hi", "message_sender": "customer"',
        b"[]",
        b'"just a string"',
        b"",
    ],
    ids=["invalid-utf8-id", "invalid-utf8-text", "bom-garbage", "nan", "truncated", "array", "string", "empty"],
)
def test_malformed_bodies_are_400(target: dict[str, Any], body: bytes) -> None:
    _assert_clear_4xx(_post_raw(target, body), 400)


def test_lone_surrogates_are_refused(target: dict[str, Any]) -> None:
    # Valid JSON, but not encodable as UTF-8, so not storable.
    channel_id = str(target["channel"].pk)
    body = f'{{"message_id": "m-1", "chat_id": "{channel_id}", "text": "\\ud800", "message_sender": "customer"}}'
    _assert_clear_4xx(_post_raw(target, body.encode()), 400)
    body = f'{{"message_id": "\\udfff", "chat_id": "{channel_id}", "text": "hi", "message_sender": "customer"}}'
    _assert_clear_4xx(_post_raw(target, body.encode()), 400)


# --- NoSQL operator injection --------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"chat_id": {"$gt": ""}},
        {"chat_id": {"$ne": None}},
        {"message_id": {"$ne": None}},
        {"message_id": {"$gt": ""}},
        {"text": {"$where": "sleep(1000)"}},
        {"message_sender": {"$in": ["customer", "employee"]}},
        {"channel_id": {"$gt": ""}},
        {"chat_id": ["a", "b"]},
        {"chat_id": 12345},
        {"text": None},
    ],
    ids=lambda o: "-".join(f"{k}={json.dumps(v)}" for k, v in o.items()),
)
def test_operator_objects_in_string_fields_are_400(target: dict[str, Any], overrides: dict[str, Any]) -> None:
    body = json.dumps(_valid(target["channel"], **overrides)).encode()
    _assert_clear_4xx(_post_raw(target, body), 400)


def test_operator_strings_are_plain_strings(target: dict[str, Any]) -> None:
    # As text they are just a chat_id that names no channel.
    for chat_id in ['{"$gt": ""}', "$gt", "'; db.dropDatabase(); '", ".*"]:
        body = json.dumps(_valid(target["channel"], chat_id=chat_id)).encode()
        _assert_clear_4xx(_post_raw(target, body), 404)


@pytest.mark.parametrize("header", ['Bearer {"$gt": ""}', "Bearer $gt", "Bearer .*", "Bearer " + "a" * 4000])
def test_hostile_secrets_are_401(target: dict[str, Any], header: str) -> None:
    body = json.dumps(_valid(target["channel"])).encode()
    _assert_clear_4xx(_post_raw(target, body, headers={SEED_HEADER: header}), 401)


# --- Headers ---------------------------------------------------------------------------------


def _raw_request(server: LiveServer, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    status_line = data.split(b"\r\n", 1)[0]
    return int(status_line.split()[1]), data


def test_huge_header_is_4xx(target: dict[str, Any]) -> None:
    body = json.dumps(_valid(target["channel"])).encode()
    response = _post_raw(target, body, headers={"X-Padding": "a" * 64 * 1024})
    assert 400 <= response.status_code < 500
    response = _post_raw(target, body, headers={SEED_HEADER: "Bearer " + "a" * 64 * 1024})
    assert 400 <= response.status_code < 500


def test_too_many_headers_is_4xx(target: dict[str, Any]) -> None:
    body = json.dumps(_valid(target["channel"])).encode()
    response = _post_raw(target, body, headers={f"X-H{i}": "v" for i in range(300)})
    assert 400 <= response.status_code < 500


@pytest.mark.parametrize(
    "header_line",
    [
        b"X-Bad Name: 1",
        b"X-Bad\x00Name: 1",
        b"X-Bad:\x00value",
        b": no-name",
        b"x-chatbot_auth_token\r\n : Bearer x",
    ],
    ids=["space-in-name", "nul-in-name", "nul-in-value", "empty-name", "folded"],
)
def test_malformed_header_lines_are_4xx(target: dict[str, Any], header_line: bytes) -> None:
    body = json.dumps(_valid(target["channel"])).encode()
    head = (
        b"POST " + WEBHOOK.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + SEED_HEADER.encode() + b": Bearer " + target["secret"].encode() + b"\r\n"
        + header_line + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"
    )  # fmt: skip
    status, _ = _raw_request(target["server"], head, body)
    assert 400 <= status < 500


# --- The management API: header injection through names and URLs ----------------------------


@pytest.fixture
def api_headers(staff_user) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"Authorization": f"Token {api_token_key(staff_user)}"}


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook\r\nX-Injected: yes",
        "http://127.0.0.1:9/hook\nX-Injected: yes",
        "http://127.0.0.1:9/ho ok",
        "http://127.0.0.1:9/hook\x00",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "http://",
        "//127.0.0.1/hook",
        "http://127.0.0.1:9/" + "a" * 3000,
    ],
    ids=["crlf", "lf", "space", "nul", "javascript", "file", "no-host", "no-scheme", "too-long"],
)
def test_channel_urls_that_could_inject_are_400(
    fault_server: LiveServer, api_headers: dict[str, str], url: str
) -> None:
    chat_bot = ChannelFactory().chat_bot
    before = Channel.objects.count()
    response = requests.post(
        fault_server.url + "/api/channels/",
        json={"name": "c", "chat_bot_id": str(chat_bot.pk), "url": url, "is_active": True},
        headers=api_headers,
        timeout=30,
    )
    _assert_clear_4xx(response, 400)
    assert Channel.objects.count() == before


@pytest.mark.parametrize("field", [{"$gt": ""}, {"$ne": None}, ["a"], None])
def test_management_api_refuses_operator_objects(
    fault_server: LiveServer, api_headers: dict[str, str], field: Any
) -> None:
    response = requests.post(fault_server.url + "/api/chatbots/", json={"name": field}, headers=api_headers, timeout=30)
    _assert_clear_4xx(response, 400)
    assert ChatBot.objects.count() == 0
    response = requests.post(
        fault_server.url + "/api/channels/",
        json={"name": "c", "chat_bot_id": field, "url": "http://127.0.0.1:9/hook"},
        headers=api_headers,
        timeout=30,
    )
    _assert_clear_4xx(response, 400)
    assert Channel.objects.count() == 0


@pytest.mark.parametrize("name", ["evil\r\nX-Injected: yes", "evil\nSet-Cookie: a=b", "nul\x00name"])
def test_names_with_control_characters_are_refused(
    fault_server: LiveServer, api_headers: dict[str, str], name: str
) -> None:
    response = requests.post(fault_server.url + "/api/chatbots/", json={"name": name}, headers=api_headers, timeout=30)
    _assert_clear_4xx(response, 400)
    assert "name" in response.json()
    assert "X-Injected" not in response.headers
    assert "Set-Cookie" not in response.headers
    assert ChatBot.objects.count() == 0
