"""Counters kept in MongoDB, for reports that must not read the data they count (a bot's LLM
usage per day, the dashboard's hours): each event adds to one small document, `$inc` with an
upsert, so a report reads a few documents by `_id` however much data there is.

With `COUNTERS_FLUSH_S` above 0 (the default) a process adds its counts up in memory and a
thread of its own writes them every that many seconds, one upsert per document instead of one
per event: counting costs the database almost nothing per message. A process that dies loses
at most that many seconds of counts (each report has a command that recounts from the data);
one that stops writes what it holds (`counters_flush`, and at exit). With 0 each count is
written at once (the tests' setting). A count the database does not take is logged and kept
for the next write; it never fails the work it counts.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections import Counter
from typing import Any

from django.conf import settings
from django.db import connections
from pymongo.errors import DuplicateKeyError, PyMongoError

from core.mongo import mongo_collection, own_client

logger = logging.getLogger(__name__)

_registry: list[Counters] = []
_flusher: dict[str, Any] = {"pid": None}
_flusher_lock = threading.Lock()
# Held counts are written on a connection of their own, so that a slow or frozen database
# never makes a request wait behind a flush for the app's connection (one per process on the
# embedded server).
_client: dict[str, Any] = {"pid": None, "client": None}


def _flush_collection(name: str) -> Any:
    pid = os.getpid()
    with _flusher_lock:
        if _client["pid"] != pid:
            _client["client"] = own_client(appname="chatbot-platform-counters", timeout_ms=settings.MONGO_TIMEOUT_MS)
            _client["pid"] = pid
        client = _client["client"]
    return client[connections["default"].settings_dict["NAME"]][name]


class Counters:
    """The documents of one collection, each `{_id, <fields set on insert>, <counts>}`."""

    def __init__(self, collection: str):
        self.collection = collection
        self._held: dict[str, Counter[str]] = {}
        self._on_insert: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        _registry.append(self)

    def add(self, key: str, counts: dict[str, int], *, on_insert: dict[str, Any] | None = None) -> None:
        """Adds `counts` (field or dotted path -> n) to document `key`; `on_insert` is set when
        the document is created."""
        inc = {field: n for field, n in counts.items() if n}
        if not inc:
            return
        if settings.COUNTERS_FLUSH_S <= 0:
            self._write(key, inc, on_insert or {})
            return
        with self._lock:
            self._held.setdefault(key, Counter()).update(inc)
            if on_insert:
                self._on_insert[key] = on_insert
        _flusher_start()

    def flush(self) -> int:
        """Writes what this process holds; returns the number of documents written. What the
        database did not take is kept for the next flush."""
        with self._lock:
            held, on_insert = self._held, self._on_insert
            self._held, self._on_insert = {}, {}
        written = 0
        for key, counts in held.items():
            if self._write(key, dict(counts), on_insert.get(key, {}), held=True):
                written += 1
                continue
            with self._lock:
                self._held.setdefault(key, Counter()).update(counts)
                if key in on_insert:
                    self._on_insert.setdefault(key, on_insert[key])
        return written

    def _write(self, key: str, inc: dict[str, int], on_insert: dict[str, Any], *, held: bool = False) -> bool:
        update: dict[str, Any] = {"$inc": inc}
        if on_insert:
            update["$setOnInsert"] = on_insert
        try:
            for _ in range(2):
                try:
                    collection = _flush_collection(self.collection) if held else mongo_collection(self.collection)
                    collection.update_one({"_id": key}, update, upsert=True)
                    return True
                except DuplicateKeyError:
                    continue  # two first counts at once: the other one created the document
        except PyMongoError as exc:
            logger.warning("counts not written: %s", type(exc).__name__, extra={"counters": self.collection})
        return False


def counters_flush() -> int:
    """Writes every count this process holds (a worker that stops, a test)."""
    return sum(counters.flush() for counters in _registry)


def _flush_forever() -> None:
    stop = threading.Event()
    while not stop.wait(max(settings.COUNTERS_FLUSH_S, 0.1)):
        try:
            counters_flush()
        except Exception:  # the thread must outlive anything a flush meets
            logger.exception("counters flush failed")


def _flusher_start() -> None:
    """One flushing thread per process, started by the first count (after a fork too)."""
    pid = os.getpid()
    if _flusher["pid"] == pid:
        return
    with _flusher_lock:
        if _flusher["pid"] == pid:
            return
        threading.Thread(target=_flush_forever, name="counters-flush", daemon=True).start()
        _flusher["pid"] = pid


atexit.register(counters_flush)
