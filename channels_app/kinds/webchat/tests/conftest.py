from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_events_left(request: pytest.FixtureRequest) -> Iterator[None]:
    """`webchat_events` is no model's table, so the test database's flush leaves it: emptied
    here around each test that uses the database."""
    if request.node.get_closest_marker("django_db") is None:
        yield
        return
    from channels_app.kinds.webchat.events import EVENTS_COLLECTION
    from core.mongo import mongo_collection

    request.getfixturevalue("django_db_blocker").unblock()
    try:
        mongo_collection(EVENTS_COLLECTION).delete_many({})
    finally:
        request.getfixturevalue("django_db_blocker").restore()
    yield
