from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from core.caching import lookup_caches_clear
from dialogues.store.claims import DialogueClaim, dialogue_claim, dialogues_due
from dialogues.tests.conftest import _shared_receiver, bot, channel, post_webhook, receiver  # noqa: F401


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    lookup_caches_clear()
    yield
    lookup_caches_clear()


@pytest.fixture
def claim_next() -> Callable[[], DialogueClaim | None]:
    """Claims the dialogue due longest, the way the worker's scheduler does (one read of the
    due dialogues, then a claim of each until one is won)."""

    def claim() -> DialogueClaim | None:
        for doc in dialogues_due(limit=8):
            won = dialogue_claim(doc)
            if won is not None:
                return won
        return None

    return claim
