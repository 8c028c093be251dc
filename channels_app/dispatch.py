"""Outbound HTTP to channels: the one place that POSTs to a channel's URL.

One pooled `requests.Session` per process; explicit connect and read timeouts; bounded
retries with exponential backoff and jitter for errors that may pass (connection errors,
timeouts, 408, 429, 5xx). Any other 4xx is the channel telling us the request itself is wrong
(bad token, unknown chat): retrying would only repeat it, so it fails at once.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from channels_app.models import Channel
from channels_app.services import is_private_address, url_targets_private_network

logger = logging.getLogger(__name__)

TEST_MESSAGE_TEXT = "Test message from the chat-bot platform"
# The first retry waits about this long; each further retry doubles it.
BACKOFF_BASE_S = 0.25
BACKOFF_MAX_S = 4.0
# Below this much budget left, another attempt could not finish anyway.
MIN_ATTEMPT_S = 0.2
ERROR_MAX_LENGTH = 500
PRIVATE_REFUSAL = "a loopback, private or link-local address"

# The backoff wait, a name of this module's own so tests can record the waits without
# touching `time.sleep` for every other thread in the process (pymongo's monitors use it).
_sleep = time.sleep


class TransportError(Exception):
    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        status_code: int | None = None,
        retry_after_s: float | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.status_code = status_code
        self.retry_after_s = retry_after_s


@dataclass
class AttemptResult:
    attempt: int
    ok: bool
    status_code: int | None
    error: str
    elapsed_ms: float
    # True when no further attempt follows within this dispatch.
    final: bool
    permanent: bool = False


@dataclass
class DeliveryResult:
    ok: bool
    status_code: int | None
    error: str
    elapsed_ms: float
    attempts: int = 1
    permanent: bool = False


# --- Where a delivery may connect ------------------------------------------------------------
#
# A channel URL whose host resolves to a loopback, private or link-local address is refused
# before the request (`private_url_refused_cached`). The host may resolve differently a moment
# later, when the connection is made (DNS rebinding), so the address actually connected to is
# checked too, before a byte is sent. Through a proxy, the proxy is the one that connects.


class PrivateAddressRefused(Exception):
    def __init__(self, address: str):
        super().__init__(address)
        self.address = address


class _PeerAddressGuard:
    proxy: Any

    def _new_conn(self):  # type: ignore[no-untyped-def]
        sock = super()._new_conn()  # type: ignore[misc]
        if self.proxy is None and not settings.CHANNEL_ALLOW_PRIVATE_URLS:
            address = sock.getpeername()[0]
            if is_private_address(address):
                sock.close()
                raise PrivateAddressRefused(address)
        return sock


class _GuardedHTTPConnection(_PeerAddressGuard, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_PeerAddressGuard, HTTPSConnection):
    pass


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    """requests' adapter whose direct connections check the address they reached."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}


_session: requests.Session | None = None
_session_lock = threading.Lock()


def http_session() -> requests.Session:
    """Created on first use, so every gunicorn worker (forked) has its own connection pool."""
    global _session
    if _session is None:
        with _session_lock:
            if _session is None:
                session = requests.Session()
                # Retries are ours (they must be counted and recorded), never urllib3's.
                adapter = GuardedAdapter(pool_connections=32, pool_maxsize=64, max_retries=0)
                session.mount("http://", adapter)
                session.mount("https://", adapter)
                _session = session
    return _session


_private_cache: dict[str, tuple[bool, float]] = {}
PRIVATE_CACHE_TTL_S = 10.0


def private_url_refused_cached(url: str) -> bool:
    """`channels_app.services.private_url_refused`, with the DNS answer kept for a few seconds:
    without it every delivery would pay a resolver round trip."""
    if settings.CHANNEL_ALLOW_PRIVATE_URLS:
        return False
    host = urlsplit(url).hostname or ""
    now = time.monotonic()
    cached = _private_cache.get(host)
    if cached is None or cached[1] < now:
        cached = (url_targets_private_network(url), now + PRIVATE_CACHE_TTL_S)
        _private_cache[host] = cached
    return cached[0]


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_delay(attempt: int) -> float:
    """Exponential backoff with jitter after the `attempt`-th failure (1-based): half fixed,
    half random, so a burst of failures does not retry in lockstep."""
    delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * (2 ** (attempt - 1)))
    return delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - jitter, not security


def _short(text: str) -> str:
    return text[:ERROR_MAX_LENGTH]


def _post_once(*, url: str, headers: dict[str, str], body: bytes, timeout: tuple[float, float]) -> int:
    """One POST. Returns the 2xx status or raises TransportError."""
    try:
        response = http_session().post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False)
    except PrivateAddressRefused as exc:
        raise TransportError(
            f"Refused: the channel's host resolved to {PRIVATE_REFUSAL} {exc.address}", permanent=True
        ) from None
    except requests.exceptions.ConnectTimeout:
        raise TransportError("Connection timed out") from None
    except requests.exceptions.ReadTimeout:
        raise TransportError(f"Read timed out after {timeout[1]:g} s") from None
    except requests.exceptions.ConnectionError as exc:
        raise TransportError(_short(f"Connection failed: {type(exc).__name__}")) from None
    except requests.exceptions.RequestException as exc:
        # Invalid URL and the like: no retry will fix it.
        raise TransportError(_short(f"Request failed: {type(exc).__name__}"), permanent=True) from None
    status = response.status_code
    # Drain and release the connection back to the pool; the body is not used.
    response.close()
    if 200 <= status < 300:
        return status
    if status in (408, 429) or status >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After")) if status in (429, 503) else None
        raise TransportError(f"Received status code {status}", status_code=status, retry_after_s=retry_after)
    raise TransportError(f"Received status code {status}", permanent=True, status_code=status)


def channel_post(
    *,
    url: str,
    token: str,
    payload: dict[str, Any],
    max_attempts: int | None = None,
    budget_s: float | None = None,
    on_attempt: Callable[[AttemptResult], None] | None = None,
    log_context: dict[str, Any] | None = None,
) -> DeliveryResult:
    """POSTs `payload` to a channel, retrying what may pass until `max_attempts` or the time
    budget is spent. `on_attempt` sees every attempt (to record it); the result is the last."""
    if max_attempts is None:
        max_attempts = 1 + settings.CHANNEL_MAX_RETRIES
    if budget_s is None:
        budget_s = settings.CHANNEL_RETRY_BUDGET_S
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8", "surrogatepass")
    headers = {
        settings.CHANNEL_AUTH_HEADER: f"Bearer {token}",
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": "chatbot-platform/1.0",
    }
    started = time.monotonic()
    deadline = started + budget_s
    connect_timeout = settings.CHANNEL_CONNECT_TIMEOUT_S
    read_timeout = settings.CHANNEL_READ_TIMEOUT_S
    context = log_context or {}

    if private_url_refused_cached(url):
        error = f"Refused: the channel URL points to {PRIVATE_REFUSAL}"
        result = AttemptResult(
            attempt=1, ok=False, status_code=None, error=error, elapsed_ms=0.0, final=True, permanent=True
        )
        logger.warning("delivery refused", extra={**context, "outcome": "refused_private_url", "attempt": 1})
        if on_attempt:
            on_attempt(result)
        return DeliveryResult(ok=False, status_code=None, error=error, elapsed_ms=0.0, attempts=1, permanent=True)

    attempt = 0
    while True:
        attempt += 1
        remaining = deadline - time.monotonic()
        # The first attempt always gets the full timeouts; later ones only what the budget has
        # left, so the webhook still answers in time.
        timeout = (connect_timeout, read_timeout) if attempt == 1 else (
            min(connect_timeout, max(remaining, MIN_ATTEMPT_S)),
            min(read_timeout, max(remaining, MIN_ATTEMPT_S)),
        )  # fmt: skip
        attempt_started = time.monotonic()
        status: int | None
        try:
            status = _post_once(url=url, headers=headers, body=body, timeout=timeout)
            error, permanent, retry_after, ok = "", False, None, True
        except TransportError as exc:
            status, error, permanent, retry_after, ok = (
                exc.status_code,
                exc.message,
                exc.permanent,
                exc.retry_after_s,
                False,
            )
        elapsed_ms = round((time.monotonic() - attempt_started) * 1000, 1)

        delay = 0.0
        final = ok or permanent or attempt >= max_attempts
        if not final:
            delay = backoff_delay(attempt)
            if retry_after is not None:
                # Honour the channel's Retry-After, but never wait longer than the cap.
                delay = min(max(retry_after, delay), settings.CHANNEL_RETRY_AFTER_CAP_S)
            if time.monotonic() + delay + MIN_ATTEMPT_S > deadline:
                final = True

        logger.info(
            "delivery attempt",
            extra={
                **context,
                "attempt": attempt,
                "ok": ok,
                "status_code": status,
                "latency_ms": elapsed_ms,
                "error": error,
                "will_retry": not final,
            },
        )
        if on_attempt:
            on_attempt(
                AttemptResult(
                    attempt=attempt,
                    ok=ok,
                    status_code=status,
                    error=error,
                    elapsed_ms=elapsed_ms,
                    final=final,
                    permanent=permanent,
                )
            )
        if final:
            total_ms = round((time.monotonic() - started) * 1000, 1)
            return DeliveryResult(
                ok=ok, status_code=status, error=error, elapsed_ms=total_ms, attempts=attempt, permanent=permanent
            )
        _sleep(delay)


def reply_payload(*, message_id: str, text: str, chat_id: str, in_reply_to: str | None) -> dict[str, Any]:
    """The body channels receive. Field names are the existing contract."""
    return {"message_id": message_id, "role": "ASSISTANT", "text": text, "chat_id": chat_id, "in_reply_to": in_reply_to}


def send_test_message(*, channel: Channel) -> DeliveryResult:
    """One attempt with a clearly marked test payload, for the operator's "send test" button."""
    payload = reply_payload(
        message_id=f"test-{uuid.uuid4()}", text=TEST_MESSAGE_TEXT, chat_id=str(channel.pk), in_reply_to=None
    )
    payload["test"] = True
    return channel_post(
        url=channel.settings.url,
        token=channel.settings.token,
        payload=payload,
        max_attempts=1,
        log_context={"channel": str(channel.pk), "test": True},
    )
