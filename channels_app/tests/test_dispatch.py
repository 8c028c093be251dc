from __future__ import annotations

import json
import time

import pytest
import requests
import responses
from django.test import override_settings

import channels_app.dispatch as dispatch
from channels_app.dispatch import channel_post, parse_retry_after, send_test_message
from channels_app.tests.factories import ChannelFactory
from tests.support.receiver import ChannelReceiver, Reply

URL = "https://channel.example.com/hook"
PAYLOAD = {"message_id": "r-1", "role": "ASSISTANT", "text": "hi", "chat_id": "c-1", "in_reply_to": "m-1"}


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Backoff waits, recorded instead of slept."""
    waited: list[float] = []
    monkeypatch.setattr(dispatch, "_sleep", waited.append)
    return waited


@responses.activate
def test_headers_body_and_timeouts() -> None:
    responses.post(URL, status=200)
    with override_settings(CHANNEL_CONNECT_TIMEOUT_S=1.5, CHANNEL_READ_TIMEOUT_S=7.0):
        result = channel_post(url=URL, token="tok-1", payload=PAYLOAD)

    assert result.ok and result.status_code == 200 and result.attempts == 1
    [call] = responses.calls
    assert call.request.headers["x-chat_auth_token"] == "Bearer tok-1"
    assert call.request.headers["Content-Type"] == "application/json"
    assert json.loads(call.request.body) == PAYLOAD
    assert call.request.req_kwargs["timeout"] == (1.5, 7.0)


@responses.activate
@override_settings(CHANNEL_AUTH_HEADER="X-Chat-Auth-Token")
def test_auth_header_name_is_a_setting() -> None:
    responses.post(URL, status=204)
    assert channel_post(url=URL, token="tok", payload=PAYLOAD).ok
    headers = responses.calls[0].request.headers
    assert headers["X-Chat-Auth-Token"] == "Bearer tok"
    assert "x-chat_auth_token" not in {name.lower() for name in headers if "_" in name}


@responses.activate
@override_settings(CHANNEL_MAX_RETRIES=3, CHANNEL_RETRY_BUDGET_S=60)
def test_5xx_is_retried_with_growing_backoff(sleeps) -> None:  # type: ignore[no-untyped-def]
    for status in (500, 502, 503):
        responses.post(URL, status=status)
    responses.post(URL, status=200)

    attempts = []
    result = channel_post(url=URL, token="t", payload=PAYLOAD, on_attempt=attempts.append)

    assert result.ok and result.attempts == 4
    assert len(responses.calls) == 4
    assert [a.status_code for a in attempts] == [500, 502, 503, 200]
    assert [a.final for a in attempts] == [False, False, False, True]
    assert len(sleeps) == 3
    # Exponential with jitter: each wait within [base/2, base] of its step.
    for index, waited in enumerate(sleeps):
        step = dispatch.BACKOFF_BASE_S * 2**index
        assert step / 2 <= waited <= step


@responses.activate
@override_settings(CHANNEL_MAX_RETRIES=2, CHANNEL_RETRY_BUDGET_S=60)
def test_retries_stop_at_the_maximum(sleeps) -> None:  # type: ignore[no-untyped-def]
    responses.post(URL, status=500)
    result = channel_post(url=URL, token="t", payload=PAYLOAD)
    assert not result.ok and result.attempts == 3 and result.status_code == 500
    assert len(responses.calls) == 3
    assert result.error == "Received status code 500"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
@responses.activate
def test_other_4xx_fails_at_once(status: int, sleeps) -> None:  # type: ignore[no-untyped-def]
    responses.post(URL, status=status)
    result = channel_post(url=URL, token="t", payload=PAYLOAD)
    assert not result.ok and result.permanent and result.attempts == 1
    assert len(responses.calls) == 1
    assert sleeps == []


@pytest.mark.parametrize("status", [408, 429])
@responses.activate
@override_settings(CHANNEL_MAX_RETRIES=1, CHANNEL_RETRY_BUDGET_S=60)
def test_408_and_429_are_retried(status: int, sleeps) -> None:  # type: ignore[no-untyped-def]
    responses.post(URL, status=status)
    responses.post(URL, status=200)
    assert channel_post(url=URL, token="t", payload=PAYLOAD).ok
    assert len(responses.calls) == 2


@responses.activate
@override_settings(CHANNEL_MAX_RETRIES=1, CHANNEL_RETRY_BUDGET_S=60, CHANNEL_RETRY_AFTER_CAP_S=5)
def test_retry_after_is_honoured(sleeps) -> None:  # type: ignore[no-untyped-def]
    responses.post(URL, status=429, headers={"Retry-After": "3"})
    responses.post(URL, status=200)
    assert channel_post(url=URL, token="t", payload=PAYLOAD).ok
    assert sleeps == [3.0]


@responses.activate
@override_settings(CHANNEL_MAX_RETRIES=1, CHANNEL_RETRY_BUDGET_S=60, CHANNEL_RETRY_AFTER_CAP_S=2)
def test_retry_after_is_capped(sleeps) -> None:  # type: ignore[no-untyped-def]
    responses.post(URL, status=429, headers={"Retry-After": "3600"})
    responses.post(URL, status=200)
    assert channel_post(url=URL, token="t", payload=PAYLOAD).ok
    assert sleeps == [2.0]


@responses.activate
@override_settings(CHANNEL_MAX_RETRIES=5, CHANNEL_RETRY_BUDGET_S=1.0, CHANNEL_RETRY_AFTER_CAP_S=5)
def test_budget_bounds_the_retries(sleeps) -> None:  # type: ignore[no-untyped-def]
    responses.post(URL, status=429, headers={"Retry-After": "2"})
    result = channel_post(url=URL, token="t", payload=PAYLOAD)
    # Waiting 2 s would overrun the 1 s budget, so the first failure is the last attempt.
    assert not result.ok and result.attempts == 1
    assert sleeps == []


@responses.activate
@override_settings(CHANNEL_MAX_RETRIES=2, CHANNEL_RETRY_BUDGET_S=60)
def test_connection_errors_and_timeouts_are_retried(sleeps) -> None:  # type: ignore[no-untyped-def]
    responses.post(URL, body=requests.exceptions.ConnectionError("refused"))
    responses.post(URL, body=requests.exceptions.ReadTimeout("slow"))
    responses.post(URL, status=200)
    attempts = []
    assert channel_post(url=URL, token="t", payload=PAYLOAD, on_attempt=attempts.append).ok
    assert attempts[0].error.startswith("Connection failed")
    assert attempts[1].error.startswith("Read timed out")
    assert len(responses.calls) == 3


@responses.activate
@override_settings(CHANNEL_ALLOW_PRIVATE_URLS=False)
def test_private_urls_are_refused_without_a_request() -> None:
    for url in ("http://127.0.0.1:9/hook", "http://10.1.2.3/hook", "http://169.254.169.254/latest", "http://[::1]/x"):
        result = channel_post(url=url, token="t", payload=PAYLOAD)
        assert not result.ok and result.permanent
        assert "private" in result.error
    assert len(responses.calls) == 0


@responses.activate
@override_settings(CHANNEL_ALLOW_PRIVATE_URLS=True)
def test_private_urls_are_allowed_when_configured() -> None:
    responses.post("http://10.1.2.3/hook", status=200)
    assert channel_post(url="http://10.1.2.3/hook", token="t", payload=PAYLOAD).ok


def test_parse_retry_after() -> None:
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= parse_retry_after(future) <= 31  # type: ignore[operator]


@pytest.mark.django_db
@responses.activate
def test_send_test_message_is_one_marked_attempt() -> None:
    channel = ChannelFactory()
    responses.post(channel.settings.url, status=500)

    result = send_test_message(channel=channel)

    assert not result.ok and result.status_code == 500 and result.error == "Received status code 500"
    assert result.elapsed_ms >= 0
    [call] = responses.calls
    body = json.loads(call.request.body)
    assert body["test"] is True
    assert body["message_id"].startswith("test-")
    assert body["role"] == "ASSISTANT"
    assert body["chat_id"] == str(channel.pk)
    assert body["in_reply_to"] is None
    assert call.request.headers["x-chat_auth_token"] == f"Bearer {channel.settings.token}"


# --- Against a real local HTTP server --------------------------------------------------


@pytest.fixture
def real_receiver():  # type: ignore[no-untyped-def]
    server = ChannelReceiver().start()
    yield server
    server.stop()


@override_settings(CHANNEL_READ_TIMEOUT_S=0.3, CHANNEL_MAX_RETRIES=1, CHANNEL_RETRY_BUDGET_S=5)
def test_read_timeout_against_a_real_server(real_receiver: ChannelReceiver) -> None:
    real_receiver.then(Reply(delay_s=1.0), Reply(status=200))
    attempts = []
    started = time.monotonic()
    result = channel_post(url=real_receiver.url, token="t", payload=PAYLOAD, on_attempt=attempts.append)

    assert result.ok and result.attempts == 2
    assert attempts[0].error == "Read timed out after 0.3 s"
    assert time.monotonic() - started < 1.5
    assert len(real_receiver.requests) == 2


@override_settings(CHANNEL_MAX_RETRIES=2, CHANNEL_RETRY_BUDGET_S=5, CHANNEL_RETRY_AFTER_CAP_S=1)
def test_429_with_retry_after_against_a_real_server(real_receiver: ChannelReceiver) -> None:
    real_receiver.then(Reply(status=429, headers={"Retry-After": "0.3"}), Reply(status=200))
    started = time.monotonic()
    result = channel_post(url=real_receiver.url, token="secret-tok", payload=PAYLOAD)

    assert result.ok and result.attempts == 2
    assert time.monotonic() - started >= 0.3
    assert [r.headers["x-chat_auth_token"] for r in real_receiver.requests] == ["Bearer secret-tok"] * 2


def test_connection_refused_against_a_closed_port() -> None:
    from devtools.embedded_mongo import free_port

    with override_settings(CHANNEL_MAX_RETRIES=0):
        result = channel_post(url=f"http://127.0.0.1:{free_port()}/hook", token="t", payload=PAYLOAD)
    assert not result.ok and not result.permanent and result.status_code is None
    assert result.error.startswith("Connection failed")


@override_settings(CHANNEL_ALLOW_PRIVATE_URLS=False, CHANNEL_MAX_RETRIES=2)
def test_an_address_that_turns_private_at_connect_time_gets_nothing(
    real_receiver: ChannelReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the host looked public when checked, then resolves to 127.0.0.1 when the
    connection is made. The connected address is checked before anything is sent."""
    monkeypatch.setattr(dispatch, "url_targets_private_network", lambda url: False)
    monkeypatch.setattr(dispatch, "_private_cache", {})
    attempts = []

    result = channel_post(url=real_receiver.url, token="secret-tok", payload=PAYLOAD, on_attempt=attempts.append)

    assert not result.ok and result.permanent and result.attempts == 1
    assert result.error == "Refused: the channel's host resolved to a loopback, private or link-local address 127.0.0.1"
    assert [a.final for a in attempts] == [True]
    time.sleep(0.2)
    assert real_receiver.requests == []
