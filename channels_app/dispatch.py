"""Outbound HTTP to channels: the one place that POSTs to a channel's URL.

One call is one attempt (`channel_attempt`). Retrying belongs to the worker, so an attempt
never raises for a network or HTTP problem: it returns an `AttemptOutcome` that says whether
a retry could help (`permanent`) and what the channel asked for (`retry_after_s`).

Each attempt has one deadline for all of it: connecting, sending, the status line and headers,
and the body, of which at most 64 KiB is read. requests' and urllib3's timeouts bound each
socket operation, not their sum, so a channel that trickles a byte every half second would
never trip them; a watchdog thread shuts the attempt's socket down at the deadline instead,
which ends whatever read or write is blocked on it at once.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from standardwebhooks import Webhook
from urllib3 import ProxyManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from channels_app.services import is_public_address, url_targets_non_public_address, validate_channel_url
from core.caching import LookupCache
from core.errors import ApplicationError

logger = logging.getLogger(__name__)

TEST_MESSAGE_TEXT = "Test message from the chat-bot platform"
USER_AGENT = "chatbot-platform/1.0"
# Of a channel's answer only the status and headers matter; the body is read (so that the
# connection can be reused) up to this much, and the connection is dropped if there is more.
MAX_BODY_BYTES = 64 * 1024
_READ_CHUNK_BYTES = 16 * 1024
ERROR_MAX_LENGTH = 500
NON_PUBLIC = "a non-public (loopback, private, link-local or reserved) address"


class TransportError(Exception):
    """A failed attempt, as `channel_attempt` reports it."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        status_code: int | None = None,
        retry_after_s: float | None = None,
    ):
        super().__init__(message)
        self.message = message[:ERROR_MAX_LENGTH]
        self.permanent = permanent
        self.status_code = status_code
        self.retry_after_s = retry_after_s


@dataclass
class AttemptOutcome:
    ok: bool  # the channel answered 2xx
    status_code: int | None
    # Short, safe to store and show: built from status codes, exception type names and the
    # operating system's error texts, never from the token, the payload or the URL.
    error: str
    # No retry can fix it: a 4xx other than 408/429, a 3xx, a refused address, an invalid URL.
    permanent: bool
    # The channel's Retry-After, on 429 and 503 only.
    retry_after_s: float | None
    elapsed_ms: float


# --- Where a delivery may connect ------------------------------------------------------------
#
# A channel URL whose host is or resolves to an address that is not globally routable is
# refused before the request (`private_url_refused_cached`). The host may resolve differently
# a moment later, when the connection is made (DNS rebinding), so the address actually
# connected to is checked too, before a byte is sent. Through a proxy, the proxy connects.


class PrivateAddressRefused(Exception):
    def __init__(self, address: str):
        super().__init__(address)
        self.address = address


# --- One deadline per attempt ----------------------------------------------------------------


class _AttemptClock:
    """One attempt's deadline and the sockets it uses. They are kept as duplicates of their
    file descriptors: those stay valid whatever urllib3 does with its own socket objects (the
    TLS wrap detaches the plain socket; an error closes it), so a late shutdown can never hit
    a descriptor number the process has since reused for something else."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.expired = False
        self._done = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()

    def watch(self, sock: socket.socket) -> None:
        try:
            dup = socket.fromfd(sock.fileno(), sock.family, sock.type, sock.proto)
        except OSError:
            return
        with self._lock:
            if self._done:
                dup.close()
                return
            self._socks.append(dup)
            if self.expired:
                _shutdown(dup)

    def expire(self) -> None:
        """At the deadline (the watchdog's thread)."""
        with self._lock:
            if self._done:
                return
            self.expired = True
            for sock in self._socks:
                _shutdown(sock)

    def finish(self) -> None:
        """The attempt's I/O is over: from here on the deadline touches nothing. Called before
        a connection goes back to the pool, so it can never cut another attempt's request."""
        with self._lock:
            self._done = True
            socks, self._socks = self._socks, []
        for sock in socks:
            sock.close()


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by the peer or by urllib3


class _Watchdog:
    """One daemon thread that expires attempt clocks at their deadlines (a timer thread per
    attempt would do the same at the cost of a thread per attempt)."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _AttemptClock]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, clock: _AttemptClock) -> None:
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="delivery-deadlines", daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, (clock.deadline, next(self._seq), clock))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                due = []
                while self._heap and self._heap[0][0] <= now:
                    due.append(heapq.heappop(self._heap)[2])
                if not due:
                    self._cond.wait(self._heap[0][0] - now if self._heap else None)
                    continue
            for clock in due:
                clock.expire()


_watchdog = _Watchdog()
# A forked child (a gunicorn worker) has no watchdog thread and must not inherit a lock
# another thread held at the fork.
os.register_at_fork(after_in_child=_watchdog._reset)

# The attempt the current thread is making, for the connection hooks below: requests gives
# no way to pass it down to urllib3's connections.
_current = threading.local()


def _current_clock() -> _AttemptClock | None:
    return getattr(_current, "clock", None)


class _PeerAddressGuard:
    proxy: Any

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        if self.proxy is None and not settings.CHANNEL_ALLOW_PRIVATE_URLS:
            address = sock.getpeername()[0]
            if not is_public_address(address):
                sock.close()
                raise PrivateAddressRefused(address)
        if (clock := _current_clock()) is not None:
            clock.watch(sock)
        return sock


class _GuardedHTTPConnection(_PeerAddressGuard, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_PeerAddressGuard, HTTPSConnection):
    pass


class _ClockedPool:
    """A pooled (kept-alive) connection taken for an attempt is watched by its clock; the
    attempt lets go of it before the connection goes back."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        if conn.sock is not None and (clock := _current_clock()) is not None:
            clock.watch(conn.sock)
        return conn

    def _put_conn(self, conn: Any) -> None:
        if (clock := _current_clock()) is not None:
            clock.finish()
        super()._put_conn(conn)  # type: ignore[misc]


class _GuardedHTTPPool(_ClockedPool, HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(_ClockedPool, HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


_POOL_CLASSES = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}


class GuardedAdapter(HTTPAdapter):
    """requests' adapter whose connections check the address they reached and are bounded by
    the attempt's deadline."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOL_CLASSES

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if type(manager) is ProxyManager:  # not SOCKS, whose pools are its own
            manager.pool_classes_by_scheme = _POOL_CLASSES
        return manager


_session: requests.Session | None = None
_session_lock = threading.Lock()


def http_session() -> requests.Session:
    """Created on first use, so every gunicorn worker (forked) has its own connection pool."""
    global _session
    if _session is None:
        with _session_lock:
            if _session is None:
                session = requests.Session()
                # Retries are the worker's (counted, recorded, spaced out), never urllib3's.
                adapter = GuardedAdapter(pool_connections=32, pool_maxsize=64, max_retries=0)
                session.mount("http://", adapter)
                session.mount("https://", adapter)
                _session = session
    return _session


PRIVATE_CACHE_TTL_S = 10.0
# Whether a host resolves to a non-public address, by host name.
_private_hosts = LookupCache(maxsize=4096, ttl_s=lambda: PRIVATE_CACHE_TTL_S)


def private_url_refused_cached(url: str) -> bool:
    """`channels_app.services.url_targets_non_public_address` unless private URLs are allowed,
    with the DNS answer kept for a few seconds: without it every attempt would pay a resolver
    round trip."""
    if settings.CHANNEL_ALLOW_PRIVATE_URLS:
        return False
    host = urlsplit(url).hostname or ""
    refused = _private_hosts.get(host)
    if refused is None:
        refused = url_targets_non_public_address(url)
        _private_hosts.set(host, refused)
    return bool(refused)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN is no answer
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


# --- Signatures (Standard Webhooks) ------------------------------------------------------------


def signature_headers(*, msg_id: str, body: bytes, secrets: Sequence[str], at: float | None = None) -> dict[str, str]:
    """`webhook-timestamp` and `webhook-signature` for these exact body bytes: one `v1,<sig>`
    per secret, space-separated (the spec's way to carry several during a key rotation).
    The timestamp is the attempt's own, so receivers' 5-minute replay window holds for retries
    too; `webhook-id` (the reply's id) stays the same across them."""
    timestamp = datetime.fromtimestamp(int(at if at is not None else time.time()), UTC)
    data = body.decode("utf-8")
    signature = " ".join(Webhook(secret).sign(msg_id=msg_id, timestamp=timestamp, data=data) for secret in secrets)
    return {"webhook-timestamp": str(int(timestamp.timestamp())), "webhook-signature": signature}


def _encode_body(payload: dict[str, Any]) -> bytes:
    body = json.dumps(payload, ensure_ascii=False)
    try:
        return body.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (from a "\ud800" escape somewhere upstream) is not UTF-8: sent as a
        # JSON escape instead, the body stays valid UTF-8, which signatures are computed over.
        return json.dumps(payload, ensure_ascii=True).encode("ascii")


# --- One attempt -------------------------------------------------------------------------


def channel_attempt(
    *,
    url: str,
    token: str,
    payload: dict[str, Any],
    idempotency_key: str,
    extra_headers: dict[str, str] | None = None,
    deadline_s: float | None = None,
    log_context: dict[str, Any] | None = None,
    signing_secrets: Sequence[str] | None = None,
) -> AttemptOutcome:
    """POSTs `payload` to a channel once, within `deadline_s` (CHANNEL_ATTEMPT_TIMEOUT_S).
    `idempotency_key` is sent as `webhook-id` (Standard Webhooks): the same on every retry of
    the same reply, so the channel can drop repeats. With `signing_secrets`
    (`channels_app.services.channel_signing_secrets`), the body is signed with each of them.
    `log_context` holds ids for the log line (never a secret)."""
    if deadline_s is None:
        deadline_s = settings.CHANNEL_ATTEMPT_TIMEOUT_S
    started = time.monotonic()
    headers = {
        settings.CHANNEL_AUTH_HEADER: f"Bearer {token}",
        "Content-Type": "application/json",
        "Accept": "application/json",
        # The answer's body is read only to be discarded: no reason to have it compressed.
        "Accept-Encoding": "identity",
        "User-Agent": USER_AGENT,
        "webhook-id": idempotency_key,
        **(extra_headers or {}),
    }
    body = _encode_body(payload)
    if signing_secrets:
        # After the caller's headers: a signature is ours to make, never overridden.
        headers.update(signature_headers(msg_id=idempotency_key, body=body, secrets=signing_secrets))
    clock = _AttemptClock(started + deadline_s)
    status: int | None = None
    try:
        status = _post(url=url, headers=headers, body=body, clock=clock, deadline_s=deadline_s)
        error, permanent, retry_after = "", False, None
    except TransportError as exc:
        status, error, permanent, retry_after = exc.status_code, exc.message, exc.permanent, exc.retry_after_s
    finally:
        clock.finish()
    outcome = AttemptOutcome(
        ok=not error,
        status_code=status,
        error=error,
        permanent=permanent,
        retry_after_s=retry_after,
        elapsed_ms=round((time.monotonic() - started) * 1000, 1),
    )
    logger.log(
        logging.INFO if outcome.ok else logging.WARNING,
        "delivery attempt",
        extra={
            **(log_context or {}),
            "ok": outcome.ok,
            "status_code": outcome.status_code,
            "latency_ms": outcome.elapsed_ms,
            "error": outcome.error,
            "permanent": outcome.permanent,
            "retry_after_s": outcome.retry_after_s,
        },
    )
    return outcome


def _post(*, url: str, headers: dict[str, str], body: bytes, clock: _AttemptClock, deadline_s: float) -> int:
    """One POST within the clock's deadline. Returns the 2xx status or raises TransportError."""
    try:
        validate_channel_url(url)
    except ApplicationError as exc:
        raise TransportError(f"Invalid URL: {exc.message}", permanent=True) from None
    if private_url_refused_cached(url):
        raise TransportError(f"Refused: the channel URL points to {NON_PUBLIC}", permanent=True)
    remaining = clock.deadline - time.monotonic()
    if remaining <= 0:  # the resolver took it all
        raise TransportError(f"Timed out after {deadline_s:g} s")
    _watchdog.arm(clock)
    _current.clock = clock
    try:
        return _exchange(url=url, headers=headers, body=body, clock=clock, remaining=remaining, deadline_s=deadline_s)
    finally:
        _current.clock = None


def _exchange(
    *, url: str, headers: dict[str, str], body: bytes, clock: _AttemptClock, remaining: float, deadline_s: float
) -> int:
    # Per-operation timeouts as well, so that nothing waits on the watchdog when it need not.
    timeout = (min(settings.CHANNEL_CONNECT_TIMEOUT_S, remaining), remaining)
    try:
        response = http_session().post(
            url, data=body, headers=headers, timeout=timeout, allow_redirects=False, stream=True
        )
    except PrivateAddressRefused as exc:
        raise TransportError(
            f"Refused: the channel's host resolved to {NON_PUBLIC} {exc.address}", permanent=True
        ) from None
    except Exception as exc:  # every failure becomes an outcome
        raise _request_error(exc, clock=clock, connect_s=timeout[0], deadline_s=deadline_s) from None

    status = response.status_code
    read_error: TransportError | None = None
    try:
        _read_bounded(response)
    except Exception as exc:
        read_error = _request_error(exc, clock=clock, connect_s=timeout[0], deadline_s=deadline_s)
    finally:
        # A body read to its end has already gone back to the pool (urllib3 releases it at the
        # end); anything else is closed here, never pooled half-read.
        response.close()

    if 200 <= status < 300:
        if read_error is not None:
            read_error.status_code = status
            raise read_error
        if clock.expired:
            raise TransportError(f"Timed out after {deadline_s:g} s", status_code=status)
        return status
    # The channel has answered; the status says what to do, whatever happened to the body.
    if 300 <= status < 400:
        raise TransportError(
            f"Received status code {status} (redirects are not followed)", permanent=True, status_code=status
        )
    if status in (408, 429) or status >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After")) if status in (429, 503) else None
        raise TransportError(f"Received status code {status}", status_code=status, retry_after_s=retry_after)
    raise TransportError(f"Received status code {status}", permanent=True, status_code=status)


def _read_bounded(response: requests.Response) -> bool:
    """Reads the body, streamed, up to MAX_BODY_BYTES. True when it ended within that."""
    received = 0
    while received <= MAX_BODY_BYTES:
        chunk = response.raw.read(min(_READ_CHUNK_BYTES, MAX_BODY_BYTES + 1 - received), decode_content=False)
        if not chunk:
            return True
        received += len(chunk)
    return False


_INVALID_REQUEST = (
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidHeader,
    requests.exceptions.URLRequired,
    UnicodeError,
)


def _request_error(exc: Exception, *, clock: _AttemptClock, connect_s: float, deadline_s: float) -> TransportError:
    if clock.expired or isinstance(exc, requests.exceptions.ReadTimeout):
        return TransportError(f"Timed out after {deadline_s:g} s")
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return TransportError(f"Connection timed out after {connect_s:g} s")
    if isinstance(exc, _INVALID_REQUEST):
        # Never the exception's text: InvalidHeader's quotes the header's value (the token).
        return TransportError(f"Invalid request: {type(exc).__name__}", permanent=True)
    if not isinstance(exc, requests.exceptions.RequestException | OSError):
        logger.warning("delivery attempt failed unexpectedly: %s", type(exc).__name__)
    return TransportError(f"Connection failed: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    """The operating system's words for what went wrong ("connection refused"), else the name
    of the innermost exception: never an exception's own text, which may quote the request."""
    seen: set[int] = set()
    level: list[BaseException] = [exc]
    innermost = exc
    # Breadth first through what each exception wraps (requests wraps urllib3's, which wrap
    # the socket's), so the last level reached is the innermost.
    while level:
        below: list[BaseException] = []
        for current in level:
            if id(current) in seen:
                continue
            seen.add(id(current))
            if isinstance(current, OSError) and current.strerror:
                return current.strerror[:1].lower() + current.strerror[1:]
            innermost = current
            nested = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
            below.extend(item for item in nested if isinstance(item, BaseException))
        level = below
    return type(innermost).__name__


# --- Payloads ----------------------------------------------------------------------------


def reply_payload(*, message_id: str, text: str, chat_id: str, in_reply_to: str | None) -> dict[str, Any]:
    """The body channels receive. Field names are the existing contract."""
    return {"message_id": message_id, "role": "ASSISTANT", "text": text, "chat_id": chat_id, "in_reply_to": in_reply_to}


def test_payload(*, channel_id: str) -> dict[str, Any]:
    """The operator's "send test message" body: a reply, clearly marked as a test."""
    payload = reply_payload(
        message_id=f"test-{uuid.uuid4()}", text=TEST_MESSAGE_TEXT, chat_id=channel_id, in_reply_to=None
    )
    payload["test"] = True
    return payload


test_payload.__test__ = False  # type: ignore[attr-defined]  # not a pytest test, whatever its name
