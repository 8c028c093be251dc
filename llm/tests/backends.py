"""LLM backends for tests, selected through LLM_BACKEND's dotted path."""

from __future__ import annotations

import itertools
import threading

_calls = itertools.count()
_count = 0
_lock = threading.Lock()


def always_failing(history: list[dict[str, str]]) -> str:
    global _count
    with _lock:
        _count += 1
    raise RuntimeError("the LLM is down")


def failing_calls() -> int:
    return _count
