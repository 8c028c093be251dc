from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.caching import lookup_caches_clear
from dialogues.tests.conftest import _shared_receiver, bot, channel, post_webhook, receiver  # noqa: F401


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    lookup_caches_clear()
    yield
    lookup_caches_clear()
