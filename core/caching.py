"""Per-process look-up caches: one kind, `cachetools.TTLCache` behind a lock.

Entries live `settings.AUTH_CACHE_TTL_S` (read when the cache is first used), so a rotated
secret, a deactivated channel or a new channel URL takes effect within that time in every
process. Every cache registers itself, so tests (and settings changes) can clear them all.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from cachetools import TTLCache
from django.conf import settings

_MISSING = object()
_registry: list[LookupCache] = []


class LookupCache:
    def __init__(self, *, maxsize: int = 10_000, ttl_s: Callable[[], float] | None = None):
        self.maxsize = maxsize
        self._ttl_s = ttl_s or (lambda: settings.AUTH_CACHE_TTL_S)
        self._lock = threading.Lock()
        self._cache: TTLCache[Any, Any] | None = None
        _registry.append(self)

    def _data(self) -> TTLCache[Any, Any] | None:
        if self._cache is None:
            ttl = self._ttl_s()
            if ttl <= 0:
                return None
            self._cache = TTLCache(maxsize=self.maxsize, ttl=ttl)
        return self._cache

    def get(self, key: Any) -> Any:
        with self._lock:
            data = self._data()
            return None if data is None else data.get(key)

    def set(self, key: Any, value: Any) -> None:
        with self._lock:
            data = self._data()
            if data is not None:
                data[key] = value

    def discard(self, key: Any) -> None:
        with self._lock:
            if self._cache is not None:
                self._cache.pop(key, None)

    def get_or_load(self, key: Any, load: Callable[[], Any]) -> Any:
        """The cached value, or `load()`'s, cached unless it is None (a missing object is
        looked up again next time, so a new bot or channel works at once)."""
        value = self.get(key)
        if value is None:
            value = load()
            if value is not None:
                self.set(key, value)
        return value

    def clear(self) -> None:
        with self._lock:
            # Dropped, not emptied: the next use reads the TTL setting again.
            self._cache = None


def lookup_caches_clear() -> None:
    for cache in _registry:
        cache.clear()
