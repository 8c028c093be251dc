"""Same-host wake-up of idle workers: a datagram on a Unix socket.

An idle worker looks for due work less and less often, up to every WORKER_IDLE_POLL_MS
(`worker.loop`). So that the first message after a quiet spell is not left waiting that long,
whatever makes work for the worker (the webhook's stored message, an operator's message,
"redeliver now", a take-over, a test message, a closed breaker) calls `worker_wake` once it has
written it. Each worker process on the host binds a socket of its own in WORKER_WAKE_DIR
(`WakeSocket`), and `worker_wake` sends one byte to every socket there: any number of workers
per host, each found by the directory alone.

The sender never waits and never fails: a non-blocking send, no name to resolve, no
connection to make. No directory, a socket nobody holds (its worker died), a worker whose
buffer is full (it has been woken already): the datagram is dropped, and the work is found by
the worker's next look anyway. The database stays the only hand-off; this only shortens the
wait. Hosts without the directory (or WORKER_WAKE_DIR unset) get their work by the poll alone.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path

from django.conf import settings

logger = logging.getLogger("worker")

# What a datagram asks for: due work to claim, or the housekeeping's requests to take (a test
# message, a closed breaker, a channel active again).
WORK = b"w"
HOUSEKEEPING = b"h"
SUFFIX = ".sock"

_sender: socket.socket | None = None
_sender_lock = threading.Lock()


def _sender_socket() -> socket.socket:
    global _sender
    if _sender is None:
        with _sender_lock:
            if _sender is None:
                sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sender.setblocking(False)
                _sender = sender
    return _sender


def worker_wake(kind: bytes = WORK) -> int:
    """Tells the workers on this host to look now. Returns how many sockets took the datagram."""
    directory = settings.WORKER_WAKE_DIR
    if not directory:
        return 0
    sent = 0
    try:
        with os.scandir(directory) as entries:
            paths = [entry.path for entry in entries if entry.name.endswith(SUFFIX)]
        sender = _sender_socket()
        for path in paths:
            try:
                sender.sendto(kind, path)
                sent += 1
            except OSError:
                pass  # nobody holds it (a dead worker's), or its buffer is full (it is awake)
    except OSError as exc:
        logger.debug("worker wake-up not sent: %s", exc)
    return sent


class WakeSocket:
    """A worker's end: `<directory>/<pid>.sock`, bound on `open`, removed on `close`."""

    def __init__(self, directory: str):
        self.path = Path(directory) / f"{os.getpid()}{SUFFIX}"
        self._socket: socket.socket | None = None

    def open(self) -> bool:
        """Binds the socket, first removing the ones no process holds (workers that died).
        False, with a warning, when it cannot: the worker then finds its work by polling."""
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _stale_remove(self.path.parent)
            self.path.unlink(missing_ok=True)  # a pid reused from an earlier run
            bound = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            bound.bind(str(self.path))
        except OSError as exc:
            logger.warning("worker: no wake-up socket at %s (%s); polling only", self.path, exc)
            return False
        self._socket = bound
        return True

    def receive(self) -> bytes:
        """Blocks until a datagram comes; b"" once closed."""
        if self._socket is None:
            return b""
        try:
            return self._socket.recv(16)
        except OSError:
            return b""

    def close(self) -> None:
        bound, self._socket = self._socket, None
        if bound is None:
            return
        self.path.unlink(missing_ok=True)
        try:
            # Wakes the thread blocked in `receive` (it returns b"").
            bound.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        bound.close()


def _stale_remove(directory: Path) -> None:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        for path in directory.glob(f"*{SUFFIX}"):
            try:
                probe.connect(str(path))
            except ConnectionRefusedError:
                path.unlink(missing_ok=True)  # no process has it bound
            except OSError:
                pass
    finally:
        probe.close()
