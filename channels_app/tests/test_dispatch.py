from __future__ import annotations

import functools
import json
import logging
import pathlib
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate

import pytest
import requests
import responses
from django.test import override_settings

import channels_app.dispatch as dispatch
import channels_app.outgoing_http as outgoing_http
from channels_app.dispatch import AttemptOutcome, channel_attempt

URL = "https://channel.example.com/hook"
TOKEN = "tok-secret-4711"
TEXT = "the customer's private words"
PAYLOAD = {"message_id": "r-1", "role": "ASSISTANT", "text": TEXT, "chat_id": "c-1", "in_reply_to": "m-1"}


def attempt(url: str = URL, **kwargs: object) -> AttemptOutcome:
    kwargs.setdefault("token", TOKEN)
    kwargs.setdefault("idempotency_key", "r-1")
    return channel_attempt(url=url, payload=PAYLOAD, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def fresh_private_cache() -> None:
    outgoing_http._private_hosts.clear()


# --- Unit tests against `responses` ------------------------------------------------------


@responses.activate
@override_settings(CHANNEL_CONNECT_TIMEOUT_S=1.5)
def test_headers_body_and_timeouts() -> None:
    responses.post(URL, status=200)

    outcome = attempt(deadline_s=7, extra_headers={"webhook-signature": "v1,c2ln"})

    assert outcome.ok and outcome.status_code == 200
    assert (outcome.error, outcome.permanent, outcome.retry_after_s) == ("", False, None)
    assert outcome.elapsed_ms >= 0
    [call] = responses.calls
    headers = call.request.headers
    assert headers["x-chat_auth_token"] == f"Bearer {TOKEN}"
    assert headers["Content-Type"] == "application/json"
    assert headers["Accept"] == "application/json"
    assert headers["User-Agent"] == "chatbot-platform/1.0"
    assert headers["webhook-id"] == "r-1"
    assert headers["webhook-signature"] == "v1,c2ln"
    assert json.loads(call.request.body or b"") == PAYLOAD
    sent_with = call.request.req_kwargs  # type: ignore[attr-defined]  # responses' record
    connect, read = sent_with["timeout"]
    assert connect == 1.5 and 6.5 < read <= 7.0
    assert sent_with["stream"] is True


@responses.activate
@override_settings(CHANNEL_CONNECT_TIMEOUT_S=3.0, CHANNEL_ATTEMPT_TIMEOUT_S=0.5)
def test_the_deadline_defaults_to_the_setting_and_bounds_connecting_too() -> None:
    responses.post(URL, status=204)
    assert attempt().ok
    connect, read = responses.calls[0].request.req_kwargs["timeout"]  # type: ignore[attr-defined]
    assert 0.4 < connect <= 0.5 and 0.4 < read <= 0.5


@responses.activate
@override_settings(CHANNEL_AUTH_HEADER="X-Chat-Auth-Token")
def test_auth_header_name_is_a_setting() -> None:
    responses.post(URL, status=204)
    assert attempt(token="tok").ok
    headers = responses.calls[0].request.headers
    assert headers["X-Chat-Auth-Token"] == "Bearer tok"
    assert not any("_" in name for name in headers)


@pytest.mark.parametrize("status", [200, 201, 202, 204])
@responses.activate
def test_2xx_is_ok(status: int) -> None:
    responses.post(URL, status=status)
    outcome = attempt()
    assert outcome.ok and outcome.status_code == status and outcome.error == ""


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@responses.activate
def test_redirects_are_permanent_errors_and_never_followed(status: int) -> None:
    responses.post(URL, status=status, headers={"Location": "https://elsewhere.example/hook"})
    responses.post("https://elsewhere.example/hook", status=200)

    outcome = attempt()

    assert not outcome.ok and outcome.permanent and outcome.status_code == status
    assert outcome.error == f"Received status code {status} (redirects are not followed)"
    assert [call.request.url for call in responses.calls] == [URL]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 410, 413, 422])
@responses.activate
def test_other_4xx_are_permanent(status: int) -> None:
    responses.post(URL, status=status, headers={"Retry-After": "5"})
    outcome = attempt()
    assert not outcome.ok and outcome.permanent and outcome.status_code == status
    assert outcome.error == f"Received status code {status}"
    assert outcome.retry_after_s is None


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
@responses.activate
def test_408_429_and_5xx_are_retryable(status: int) -> None:
    responses.post(URL, status=status)
    outcome = attempt()
    assert not outcome.ok and not outcome.permanent and outcome.status_code == status
    assert outcome.error == f"Received status code {status}"
    assert outcome.retry_after_s is None


@pytest.mark.parametrize(
    ("status", "value", "low", "high"),
    [
        (429, "7", 7.0, 7.0),
        (503, "120", 120.0, 120.0),
        (429, "0", 0.0, 0.0),
        (503, "in 30 s", 25.0, 31.0),  # an HTTP date 30 s ahead, made when the test runs
        (429, "Wed, 21 Oct 2015 07:28:00 GMT", 0.0, 0.0),
        (429, "soon", None, None),
    ],
)
@responses.activate
def test_retry_after_is_read_on_429_and_503(status: int, value: str, low: float | None, high: float | None) -> None:
    if value == "in 30 s":
        value = formatdate(time.time() + 30, usegmt=True)
    responses.post(URL, status=status, headers={"Retry-After": value})
    outcome = attempt()
    assert not outcome.permanent
    if low is None:
        assert outcome.retry_after_s is None
    else:
        assert outcome.retry_after_s is not None and low <= outcome.retry_after_s <= high  # type: ignore[operator]


@pytest.mark.parametrize("status", [408, 500, 502, 504])
@responses.activate
def test_retry_after_is_ignored_on_other_statuses(status: int) -> None:
    responses.post(URL, status=status, headers={"Retry-After": "30"})
    assert attempt().retry_after_s is None


@pytest.mark.parametrize(
    ("exception", "error"),
    [
        (
            requests.exceptions.ConnectionError(ConnectionRefusedError(111, "Connection refused")),
            "Connection failed: connection refused",
        ),
        (requests.exceptions.ConnectionError("no reason given"), "Connection failed: ConnectionError"),
        (requests.exceptions.ReadTimeout("slow"), "Timed out after 5 s"),
        (requests.exceptions.ConnectTimeout("slow"), "Connection timed out after 1.5 s"),
        (requests.exceptions.SSLError("bad certificate"), "Connection failed: SSLError"),
        (RuntimeError("a bug somewhere below"), "Connection failed: RuntimeError"),
    ],
)
@responses.activate
@override_settings(CHANNEL_CONNECT_TIMEOUT_S=1.5)
def test_network_errors_are_retryable_outcomes(exception: Exception, error: str) -> None:
    responses.post(URL, body=exception)
    outcome = attempt(deadline_s=5)
    assert not outcome.ok and not outcome.permanent and outcome.status_code is None
    assert outcome.error == error


@pytest.mark.parametrize("url", ["ftp://files.example/h", "not a url", "http://", "http://[::1/h", ""])
@responses.activate
def test_invalid_urls_are_permanent_without_a_request(url: str) -> None:
    outcome = attempt(url=url)
    assert not outcome.ok and outcome.permanent and outcome.error.startswith("Invalid URL: ")
    assert len(responses.calls) == 0


@responses.activate
def test_a_token_that_is_not_a_valid_header_value_is_permanent_and_not_shown() -> None:
    outcome = attempt(token="tok\r\nX-Injected: secret-4711")
    assert not outcome.ok and outcome.permanent
    assert outcome.error == "Invalid request: InvalidHeader"
    assert len(responses.calls) == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest",
        "http://[::1]/x",
        "http://100.100.100.200/",
        "http://[fec0::1]/",
        "http://[2002:7f00:1::]/",
        "http://[::ffff:127.0.0.1]/",
    ],
)
@responses.activate
@override_settings(CHANNEL_ALLOW_PRIVATE_URLS=False)
def test_non_public_urls_are_refused_without_a_request(url: str) -> None:
    outcome = attempt(url=url)
    assert not outcome.ok and outcome.permanent and outcome.status_code is None
    assert outcome.error == f"Refused: the channel URL points to {dispatch.NON_PUBLIC}"
    assert len(responses.calls) == 0


@responses.activate
@override_settings(CHANNEL_ALLOW_PRIVATE_URLS=True)
def test_private_urls_are_allowed_when_configured() -> None:
    responses.post("http://10.1.2.3/hook", status=200)
    assert attempt(url="http://10.1.2.3/hook").ok


@responses.activate
def test_one_log_line_per_attempt_with_ids_and_without_token_or_text(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="channels_app.dispatch")
    responses.post(URL, status=200)
    responses.post(URL, status=503)
    context = {"channel": "ch-1", "reply_id": "r-1"}

    first = attempt(log_context=context)
    second = attempt(log_context=context)

    assert first.ok and not second.ok
    records = [r for r in caplog.records if r.name == "channels_app.dispatch"]
    assert [r.getMessage() for r in records] == ["delivery attempt", "delivery attempt"]
    assert [(r.channel, r.reply_id, r.ok, r.status_code) for r in records] == [  # type: ignore[attr-defined]
        ("ch-1", "r-1", True, 200),
        ("ch-1", "r-1", False, 503),
    ]
    assert records[1].levelno == logging.WARNING
    logged = caplog.text + " ".join(str(vars(r)) for r in records)
    assert TOKEN not in logged and TEXT not in logged


def test_test_payload_is_a_marked_reply() -> None:
    payload = dispatch.test_payload(channel_id="ch-9")
    assert payload["test"] is True
    assert re.fullmatch(r"test-[0-9a-f-]{36}", payload["message_id"])
    assert payload["text"] == dispatch.TEST_MESSAGE_TEXT
    assert (payload["role"], payload["chat_id"], payload["in_reply_to"]) == ("ASSISTANT", "ch-9", None)
    assert payload["type"] == "message"
    assert dispatch.test_payload(channel_id="ch-9")["message_id"] != payload["message_id"]


def test_reply_payload_is_a_message() -> None:
    payload = dispatch.reply_payload(message_id="r-1", text="Hi", chat_id="c-1", in_reply_to="m-1")
    assert payload == {
        "type": "message",
        "message_id": "r-1",
        "role": "ASSISTANT",
        "text": "Hi",
        "chat_id": "c-1",
        "in_reply_to": "m-1",
    }


def test_typing_payload_names_the_chat_and_the_state() -> None:
    assert dispatch.typing_payload(chat_id="c-1", state="on") == {"type": "typing", "chat_id": "c-1", "state": "on"}
    assert dispatch.typing_payload(chat_id="c-1", state="off")["state"] == "off"
    with pytest.raises(ValueError):
        dispatch.typing_payload(chat_id="c-1", state="maybe")


@pytest.mark.parametrize(("attempt_timeout_s", "deadline_s"), [(10.0, 2.0), (0.5, 0.5)])
@responses.activate
def test_a_typing_event_is_one_signed_attempt_with_a_short_deadline(
    monkeypatch: pytest.MonkeyPatch, attempt_timeout_s: float, deadline_s: float
) -> None:
    from standardwebhooks import Webhook

    from channels_app.models import Channel, ChannelSettings
    from channels_app.services import generate_signing_secret

    responses.post(URL, status=500)
    secret = generate_signing_secret()
    channel = Channel(settings=ChannelSettings(url=URL, token=TOKEN), signing_secret=secret)
    seen: dict[str, object] = {}
    real_attempt = dispatch.channel_attempt

    def spy(**kwargs: object) -> AttemptOutcome:
        seen.update(kwargs)
        return real_attempt(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(dispatch, "channel_attempt", spy)
    with override_settings(CHANNEL_ATTEMPT_TIMEOUT_S=attempt_timeout_s):
        outcome = dispatch.channel_typing_send(channel=channel, chat_id="c-1", state="on", log_context={})
    assert not outcome.ok and outcome.status_code == 500
    assert seen["deadline_s"] == deadline_s
    [call] = responses.calls  # one attempt, whatever the answer
    body = call.request.body
    assert isinstance(body, bytes) and json.loads(body) == {"type": "typing", "chat_id": "c-1", "state": "on"}
    headers = {k: v for k, v in call.request.headers.items() if isinstance(v, str)}
    assert re.fullmatch(r"typing-[0-9a-f-]{36}", headers["webhook-id"])
    assert headers["x-chat_auth_token"] == f"Bearer {TOKEN}"
    Webhook(secret).verify(body, headers)  # raises if not signed with the channel's secret


# --- Against real sockets on 127.0.0.1 ---------------------------------------------------
#
# A raw TCP server, so that a test controls every byte (and its timing) the "channel" sends.


class RawServer:
    """Accepts connections on 127.0.0.1 and hands each to `handle(conn, server)` on a thread."""

    def __init__(self, handle: Callable[[socket.socket, RawServer], None]):
        self.handle = handle
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"
        self.stopped = threading.Event()
        self.connections = 0
        self.heads: list[bytes] = []
        self.bodies: list[bytes] = []
        self.received = b""
        self.sent = 0
        self.handled = threading.Event()
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self.handle(conn, self)
        except OSError:
            pass  # the client went away: what these tests expect of it
        finally:
            conn.close()
            self.handled.set()

    def read_request(self, conn: socket.socket) -> bool:
        """Reads one request (head and Content-Length body). False when the client closed."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                self.received += data
                return False
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
        while len(body) < length:
            body += conn.recv(65536)
        self.received += data
        self.heads.append(head)
        self.bodies.append(body)
        return True

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def stop(self) -> None:
        self.stopped.set()
        self.listener.close()
        for conn in self._conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


Handler = Callable[[socket.socket, "RawServer"], None]
Serve = Callable[[Handler], "RawServer"]


@pytest.fixture
def serve() -> Iterator[Serve]:
    servers: list[RawServer] = []

    def start(handle: Handler) -> RawServer:
        servers.append(RawServer(handle))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()
    # Pooled keep-alive connections to these servers must not outlive them.
    outgoing_http.http_session().close()
    outgoing_http._session = None


def answer_ok(conn: socket.socket, server: RawServer) -> None:
    """A keep-alive channel that answers 200 with a small body, as often as asked."""
    while server.read_request(conn):
        server.send(
            conn, b'HTTP/1.1 200 OK\r\nContent-Length: 11\r\nContent-Type: application/json\r\n\r\n{"ok": true}'
        )


def trickle(conn: socket.socket, server: RawServer, data: bytes) -> None:
    for byte in data:
        if server.stopped.wait(0.5):
            return
        server.send(conn, bytes([byte]))


def test_exact_header_names_reach_the_channel(serve: Serve) -> None:
    server = serve(answer_ok)

    outcome = attempt(url=server.url, idempotency_key="reply-42", extra_headers={"webhook-timestamp": "1700000000"})

    assert outcome.ok and outcome.status_code == 200
    [head] = server.heads
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /hook HTTP/1.1"
    # Byte for byte: the underscore and the lower case survive (gunicorn and nginx drop
    # underscored names by default; a receiver must see exactly this one).
    assert f"x-chat_auth_token: Bearer {TOKEN}" in lines
    assert "webhook-id: reply-42" in lines
    assert "webhook-timestamp: 1700000000" in lines
    assert "User-Agent: chatbot-platform/1.0" in lines
    assert "Content-Type: application/json" in lines
    assert json.loads(server.bodies[0]) == PAYLOAD


@pytest.mark.parametrize(
    ("sent_at_once", "trickled", "status_code"),
    [
        pytest.param(b"", b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100, None, id="status-line"),
        # The status line had arrived: it is reported, but the attempt still failed.
        pytest.param(b"HTTP/1.1 200 OK\r\n", b"X-Slow: " + b"a" * 100, 200, id="headers"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", b"a" * 100, 200, id="body"),
    ],
)
def test_a_channel_that_trickles_its_answer_is_cut_off_at_the_deadline(
    serve: Serve, sent_at_once: bytes, trickled: bytes, status_code: int | None
) -> None:
    """One byte every 0.5 s never trips a per-read timeout; the attempt's deadline ends it."""

    def handle(conn: socket.socket, server: RawServer) -> None:
        server.read_request(conn)
        server.send(conn, sent_at_once)
        trickle(conn, server, trickled)

    server = serve(handle)
    started = time.monotonic()

    outcome = attempt(url=server.url, deadline_s=2)

    elapsed = time.monotonic() - started
    assert 1.9 <= elapsed <= 3.0, elapsed
    assert not outcome.ok and not outcome.permanent and outcome.status_code == status_code
    assert outcome.error == "Timed out after 2 s"
    assert outcome.elapsed_ms <= 3000
    assert 0 < server.sent - len(sent_at_once) < len(trickled)  # it was still trickling


def test_an_error_status_with_a_trickled_body_keeps_its_meaning(serve: Serve) -> None:
    def handle(conn: socket.socket, server: RawServer) -> None:
        server.read_request(conn)
        server.send(conn, b"HTTP/1.1 404 Not Found\r\nContent-Length: 100\r\n\r\n")
        trickle(conn, server, b"a" * 100)

    server = serve(handle)
    started = time.monotonic()
    outcome = attempt(url=server.url, deadline_s=1)
    assert time.monotonic() - started <= 2.0
    assert not outcome.ok and outcome.permanent and outcome.status_code == 404
    assert outcome.error == "Received status code 404"


def _kib(name: str) -> int:
    with open("/proc/self/status") as status:
        return int(re.search(rf"{name}:\s+(\d+)", status.read()).group(1))  # type: ignore[union-attr]


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_400_mb_answer_is_not_read(serve: Serve, framing: str) -> None:
    size = 400 * 1024 * 1024
    block = b"x" * 65536

    def handle(conn: socket.socket, server: RawServer) -> None:
        server.read_request(conn)
        if framing == "chunked":
            server.send(conn, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            block_out = b"%x\r\n%s\r\n" % (len(block), block)
        else:
            server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
            block_out = block
        for _ in range(size // len(block)):
            server.send(conn, block_out)

    server = serve(handle)
    baseline = _kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # resets VmHWM (the peak) to the current size
    started = time.monotonic()

    outcome = attempt(url=server.url, deadline_s=5)

    elapsed = time.monotonic() - started
    peak_growth_mb = (_kib("VmHWM") - baseline) / 1024
    assert outcome.ok and outcome.status_code == 200, outcome
    assert elapsed < 1.0, elapsed
    assert peak_growth_mb < 30, peak_growth_mb
    # The connection was closed rather than drained: the sender gave up long before 400 MB.
    assert server.handled.wait(5)
    assert server.sent < 50 * 1024 * 1024


def test_a_fully_read_answer_keeps_its_connection_and_a_truncated_one_does_not(serve: Serve) -> None:
    big = 100 * 1024

    def handle(conn: socket.socket, server: RawServer) -> None:
        while server.read_request(conn):
            length = big if len(server.heads) == 2 else 2
            server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (length, b"a" * length))

    server = serve(handle)
    assert attempt(url=server.url).ok
    assert attempt(url=server.url).ok  # same connection; answers 100 KiB, more than is read
    assert server.connections == 1
    assert attempt(url=server.url).ok  # so this one needs a new connection
    assert server.connections == 2
    assert len(server.heads) == 3


def test_a_finished_attempts_deadline_never_touches_its_pooled_connection(serve: Serve) -> None:
    server = serve(answer_ok)
    assert attempt(url=server.url, deadline_s=0.3).ok
    time.sleep(0.5)  # the first attempt's deadline passes while its connection sits in the pool
    assert attempt(url=server.url, deadline_s=0.3).ok
    assert server.connections == 1


def test_a_pooled_connection_is_bounded_by_the_deadline_too(serve: Serve) -> None:
    """The second attempt reuses the first one's kept-alive connection, and the channel
    trickles on it: that socket is watched as well as a new one."""

    def handle(conn: socket.socket, server: RawServer) -> None:
        server.read_request(conn)
        server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        server.read_request(conn)
        trickle(conn, server, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"a" * 100)

    server = serve(handle)
    assert attempt(url=server.url).ok
    started = time.monotonic()
    outcome = attempt(url=server.url, deadline_s=1)
    assert time.monotonic() - started <= 2.0
    assert outcome.error == "Timed out after 1 s" and not outcome.permanent
    assert server.connections == 1


def test_the_deadline_lets_go_of_a_connection_before_it_is_pooled(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the answer is read (and its connection back in the pool, where another attempt may
    take it), a deadline passing before the attempt returns must not touch that connection."""
    read_bounded = dispatch._read_bounded

    def read_then_dawdle(response: requests.Response) -> bool:
        complete = read_bounded(response)
        time.sleep(0.4)  # past the 0.2 s deadline, with the connection already pooled
        return complete

    monkeypatch.setattr(dispatch, "_read_bounded", read_then_dawdle)
    server = serve(answer_ok)

    assert attempt(url=server.url, deadline_s=0.2).ok
    monkeypatch.setattr(dispatch, "_read_bounded", read_bounded)
    assert attempt(url=server.url).ok
    assert server.connections == 1


def test_connection_refused_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before the attempt

    outcome = attempt(url=f"http://127.0.0.1:{port}/hook")

    assert not outcome.ok and not outcome.permanent and outcome.status_code is None
    assert outcome.error == "Connection failed: connection refused"
    assert outcome.elapsed_ms < 1000


@override_settings(CHANNEL_ALLOW_PRIVATE_URLS=False)
def test_an_address_that_turns_private_at_connect_time_gets_nothing(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the host looked public when checked, then resolves to 127.0.0.1 when the
    connection is made. The connected address is checked before a byte is sent."""
    checked: list[str] = []

    def looks_public(url: str) -> bool:
        checked.append(url)
        return False

    monkeypatch.setattr(outgoing_http, "url_targets_non_public_address", looks_public)
    server = serve(answer_ok)

    outcome = attempt(url=server.url)

    assert checked == [server.url]
    assert not outcome.ok and outcome.permanent and outcome.status_code is None
    assert outcome.error == f"Refused: the channel's host resolved to {dispatch.NON_PUBLIC} 127.0.0.1"
    assert server.handled.wait(2)  # the refused connection was closed ...
    assert server.received == b"" and server.heads == []  # ... before anything was sent


@pytest.fixture
def tls_context(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """A server-side TLS context for 127.0.0.1 with a throwaway self-signed certificate, which
    the client trusts for this test."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(  # noqa: S603 - fixed arguments
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def test_https_is_bounded_from_the_handshake_on(serve: Serve, tls_context: ssl.SSLContext) -> None:
    """The TLS wrap replaces the socket urllib3 connected (the plain one is detached): the
    deadline still reaches the connection, in the handshake, on a new connection and on a
    kept-alive one."""

    def stalls_the_handshake(conn: socket.socket, server: RawServer) -> None:
        conn.recv(4096)  # the ClientHello
        trickle(conn, server, b"\x16\x03\x03\x00\x40" + b"a" * 64)  # a record that never ends

    def trickles_the_body(conn: socket.socket, server: RawServer, *, after: int) -> None:
        tls = tls_context.wrap_socket(conn, server_side=True)
        for _ in range(after):
            server.read_request(tls)
            server.send(tls, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        server.read_request(tls)
        server.send(tls, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        trickle(tls, server, b"a" * 100)

    def timed(url: str) -> AttemptOutcome:
        started = time.monotonic()
        outcome = attempt(url=url, deadline_s=1)
        assert time.monotonic() - started <= 2.0
        assert outcome.error == "Timed out after 1 s" and not outcome.permanent
        return outcome

    stalling = serve(stalls_the_handshake)
    assert timed(stalling.url.replace("http:", "https:")).status_code is None

    fresh = serve(functools.partial(trickles_the_body, after=0))
    assert timed(fresh.url.replace("http:", "https:")).status_code == 200

    kept_alive = serve(functools.partial(trickles_the_body, after=1))
    url = kept_alive.url.replace("http:", "https:")
    assert attempt(url=url).ok
    assert timed(url).status_code == 200
    assert kept_alive.connections == 1
