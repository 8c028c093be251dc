"""The one helper for datetimes read back from the database: MongoDB stores UTC without a
zone, and pymongo returns naive values unless the client is tz-aware. The clock itself is
`django.utils.timezone.now` (UTC, aware)."""

from __future__ import annotations

from datetime import UTC, datetime


def aware(when: datetime) -> datetime:
    """`when` as an aware UTC datetime (a naive value is taken as UTC)."""
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
