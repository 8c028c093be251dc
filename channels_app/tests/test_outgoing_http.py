from __future__ import annotations

import time

import pytest
from requests.structures import CaseInsensitiveDict

from channels_app.outgoing_http import retry_after_s


def http_date(from_now_s: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + from_now_s))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5", 5.0),
        (" 2.5 ", 2.5),
        ("0.5", 0.5),
        ("-3", 0.0),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("NaN", None),
        ("inf", None),
        ("-inf", None),
        ("1e999", None),  # overflows to infinity
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date in the past
        ("Wed, 21 Oct 99999 07:28:00 GMT", None),  # a year datetime cannot hold
        ("Wed,", None),
    ],
)
def test_retry_after_seconds_and_dates(value: str, expected: float | None) -> None:
    assert retry_after_s({"retry-after": value}) == expected
    assert retry_after_s({"retry-after": value}, retry_after_ms=True) == expected


def test_retry_after_absent() -> None:
    assert retry_after_s({}) is None
    assert retry_after_s({}, retry_after_ms=True) is None


def test_retry_after_a_date_to_come() -> None:
    assert 55 <= (retry_after_s({"retry-after": http_date(60)}) or 0) <= 61


def test_retry_after_reads_the_headers_of_a_response_whatever_their_case() -> None:
    assert retry_after_s(CaseInsensitiveDict({"Retry-After": "7"})) == 7.0


@pytest.mark.parametrize(
    ("ms", "expected"),
    [
        ("250", 0.25),
        ("-5", 0.0),
        # Unreadable: Retry-After (3 s) answers instead.
        ("nan", 3.0),
        ("inf", 3.0),
        ("soon", 3.0),
        ("", 3.0),
    ],
)
def test_retry_after_ms_first_when_asked(ms: str, expected: float) -> None:
    assert retry_after_s({"retry-after-ms": ms, "retry-after": "3"}, retry_after_ms=True) == expected


def test_retry_after_ms_is_ignored_unless_asked() -> None:
    """Channels answer with Retry-After only; OpenAI's header is the LLM backend's."""
    assert retry_after_s({"retry-after-ms": "250"}) is None
    assert retry_after_s({"retry-after-ms": "250"}, retry_after_ms=True) == 0.25
