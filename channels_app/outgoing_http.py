"""Outbound HTTP mechanics: how a request leaves, not what it says.

- One deadline for a whole attempt (`AttemptClock`, run under `clocked`): connecting,
  sending, the status line and headers, and the body. requests' and urllib3's timeouts bound
  each socket operation, not their sum, so a server that trickles a byte every half second
  would never trip them; a watchdog thread shuts the attempt's sockets down at the deadline
  instead, which ends whatever read or write is blocked on them at once.
- `http_session`: requests' session whose pooled connections check the address they reached
  (`PrivateAddressRefused`) and are bounded by the current attempt's clock.
- `private_url_refused_cached`: the channel URL rule on addresses, with the DNS answer kept
  for a few seconds.
- `retry_after_s`: the one reading of `Retry-After` (and OpenAI's `retry-after-ms`).

What to send and which answer is final are the callers' rules (`channels_app.dispatch`).
"""

from __future__ import annotations

import heapq
import itertools
import math
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3 import ProxyManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from channels_app.services import is_public_address, url_targets_non_public_address
from core.caching import LookupCache

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


class AttemptClock:
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
        self._heap: list[tuple[float, int, AttemptClock]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, clock: AttemptClock) -> None:
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


def _current_clock() -> AttemptClock | None:
    return getattr(_current, "clock", None)


@contextmanager
def clocked(clock: AttemptClock) -> Iterator[None]:
    """Within it, every connection this thread makes or takes from `http_session`'s pools is
    shut down at `clock`'s deadline. The caller calls `clock.finish()` when its I/O is over."""
    _watchdog.arm(clock)
    _current.clock = clock
    try:
        yield
    finally:
        _current.clock = None


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


# --- Retry-After ---------------------------------------------------------------------------


def retry_after_s(headers: Mapping[str, str], *, retry_after_ms: bool = False) -> float | None:
    """Seconds to wait, from `Retry-After` (delta-seconds or an HTTP date; a date in the past
    is 0). With `retry_after_ms`, OpenAI's `retry-after-ms` is read first. None when absent
    or unreadable (garbage, NaN, infinity). `headers` is looked up by lower-case names, as
    requests' and httpx's case-insensitive headers allow."""
    if retry_after_ms:
        try:
            milliseconds = float(headers.get("retry-after-ms") or "")
        except ValueError:
            pass
        else:
            if math.isfinite(milliseconds):
                return max(0.0, milliseconds / 1000)
    value = (headers.get("retry-after") or "").strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
