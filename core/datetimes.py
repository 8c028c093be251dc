"""The one helper for datetimes read back from the database: MongoDB stores UTC without a
zone, and pymongo returns naive values unless the client is tz-aware. The clock itself is
`django.utils.timezone.now` (UTC, aware)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload


@overload
def aware(when: datetime) -> datetime: ...
@overload
def aware(when: None) -> None: ...
def aware(when: datetime | None) -> datetime | None:
    """`when` as an aware UTC datetime (a naive value is taken as UTC); None stays None."""
    if when is None or when.tzinfo is not None:
        return when
    return when.replace(tzinfo=UTC)
