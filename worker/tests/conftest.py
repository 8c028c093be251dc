from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from core.caching import lookup_caches_clear
from dialogues.tests.conftest import _shared_receiver, bot, channel, post_webhook, receiver  # noqa: F401
from worker.loop import Worker


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    lookup_caches_clear()
    yield
    lookup_caches_clear()


@pytest.fixture
def worker() -> Iterator[Worker]:
    """The real worker, in this process: `worker.drain()` works until nothing is due."""
    instance = Worker(threads=8, poll_ms=5)
    yield instance
    instance.close()


@pytest.fixture
def drain(worker: Worker) -> Callable[[], None]:
    def run() -> None:
        lookup_caches_clear()  # what a test changed in the database is seen at once
        worker.drain(timeout_s=30)

    return run
