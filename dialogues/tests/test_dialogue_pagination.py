"""`GET /api/dialogues/`: paginated by default with a cursor (core.pagination.KeysetCursorPagination)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from bson import ObjectId
from rest_framework.test import APIClient

from channels_app.models import Channel
from channels_app.tests.factories import ChannelFactory
from dialogues.models import Dialogue
from dialogues.tests.factories import DialogueFactory

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def _many(channel: Channel, *, groups: int, per_group: int, nulls: int = 0) -> list[Dialogue]:
    """`groups` distinct last_message_at values, `per_group` dialogues sharing each, and
    `nulls` dialogues that never had a message time."""
    rows = [
        Dialogue(
            chat_bot_id=channel.chat_bot_id,
            channel=channel,
            chat_id=f"chat-{g}-{n}",
            last_message_at=T0 + dt.timedelta(seconds=g),
        )
        for g in range(groups)
        for n in range(per_group)
    ]
    rows += [
        Dialogue(chat_bot_id=channel.chat_bot_id, channel=channel, chat_id=f"never-{n}", last_message_at=None)
        for n in range(nulls)
    ]
    Dialogue.objects.bulk_create(rows)
    return list(Dialogue.objects.filter(channel=channel))


def _expected_order(dialogues: list[Dialogue]) -> list[str]:
    # Most recent first, ties broken by the id (descending), never-active ones last.
    dated = sorted(
        (d for d in dialogues if d.last_message_at is not None),
        key=lambda d: (d.last_message_at, ObjectId(str(d.pk))),
        reverse=True,
    )
    undated = sorted(
        (d for d in dialogues if d.last_message_at is None), key=lambda d: ObjectId(str(d.pk)), reverse=True
    )
    return [str(d.pk) for d in dated + undated]


def _get(client: APIClient, url: str) -> dict[str, Any]:
    response = client.get(url)
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    assert set(body) == {"next", "previous", "results"}
    return body


def _walk(client: APIClient, url: str, link: str) -> list[list[str]]:
    pages = []
    next_url: str | None = url
    while next_url:
        body = _get(client, next_url)
        pages.append([row["id"] for row in body["results"]])
        next_url = body[link]
        assert len(pages) < 100, "the walk does not end"
    return pages


def _cursor(raw: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")


def test_the_list_is_an_envelope_by_default(api_client: APIClient) -> None:
    first, second = DialogueFactory(), DialogueFactory()
    body = _get(api_client, "/api/dialogues/")
    assert body["next"] is None and body["previous"] is None
    assert {row["id"] for row in body["results"]} == {str(first.pk), str(second.pk)}


def test_default_page_is_50(api_client: APIClient) -> None:
    _many(ChannelFactory(), groups=3, per_group=20)
    body = _get(api_client, "/api/dialogues/")
    assert len(body["results"]) == 50 and body["next"] is not None


def test_a_walk_over_ties_neither_repeats_nor_skips(api_client: APIClient) -> None:
    # 170 dialogues, most sharing their last_message_at with 39 others, some with none.
    dialogues = _many(ChannelFactory(), groups=4, per_group=40, nulls=10)
    expected = _expected_order(dialogues)
    assert len(expected) == 170

    forward = _walk(api_client, "/api/dialogues/?limit=25", "next")
    assert [len(page) for page in forward] == [25] * 6 + [20]
    assert [row for page in forward for row in page] == expected

    # And back from the last page through `previous`: the same pages, in reverse.
    last = _get(api_client, "/api/dialogues/?limit=25")
    while last["next"]:
        last = _get(api_client, last["next"])
    backward = _walk(api_client, last["previous"], "previous")
    assert backward == list(reversed(forward[:-1]))


def test_a_walk_with_page_size_one_over_one_tie(api_client: APIClient) -> None:
    dialogues = _many(ChannelFactory(), groups=1, per_group=7)
    pages = _walk(api_client, "/api/dialogues/?limit=1", "next")
    assert [row for page in pages for row in page] == _expected_order(dialogues)


def test_filters_and_limit_ride_along_in_the_links(api_client: APIClient) -> None:
    mine = _many(ChannelFactory(), groups=2, per_group=3)
    _many(ChannelFactory(), groups=2, per_group=3)
    bot_id = str(mine[0].chat_bot_id)
    first = _get(api_client, f"/api/dialogues/?chat_bot_id={bot_id}&limit=2")
    query = parse_qs(urlparse(first["next"]).query)
    assert query["chat_bot_id"] == [bot_id] and query["limit"] == ["2"] and "cursor" in query
    pages = _walk(api_client, f"/api/dialogues/?chat_bot_id={bot_id}&limit=2", "next")
    assert [len(page) for page in pages] == [2, 2, 2]
    assert [row for page in pages for row in page] == _expected_order(mine)


@pytest.mark.parametrize("limit", ["0", "501", "-1", "x", "1.5", ""])
def test_a_limit_out_of_bounds_is_400(api_client: APIClient, limit: str) -> None:
    response = api_client.get(f"/api/dialogues/?limit={limit}")
    assert response.status_code == 400
    assert "limit" in response.json()


def test_limit_500_is_accepted(api_client: APIClient) -> None:
    _many(ChannelFactory(), groups=1, per_group=3)
    assert len(_get(api_client, "/api/dialogues/?limit=500")["results"]) == 3


def test_offset_is_refused_with_a_pointer_to_the_cursor(api_client: APIClient) -> None:
    response = api_client.get("/api/dialogues/?offset=10")
    assert response.status_code == 400
    assert "cursor" in response.json()["offset"][0]


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        "x" * 600,
        "%FF%FE",
        _cursor([1, 2]),
        _cursor({"p": ["2026-01-01T00:00:00+00:00"], "r": False}),
        _cursor({"p": ["2026-01-01T00:00:00+00:00", "not-an-id"], "r": False}),
        _cursor({"p": ["yesterday", str(ObjectId())], "r": False}),
        _cursor({"p": ["2026-01-01T00:00:00+00:00", str(ObjectId())], "r": "yes"}),
        _cursor({"p": [None, None], "r": False}),
        _cursor({"p": [{"$gt": ""}, str(ObjectId())], "r": False}),
        "0",
        "older-0-0",
        "older-1-" + "0" * 23,
        "older-" + "9" * 18 + "-" + "0" * 24,
        "sideways-none-" + "0" * 24,
    ],
)
def test_a_bad_cursor_is_400(api_client: APIClient, cursor: str) -> None:
    DialogueFactory()
    response = api_client.get(f"/api/dialogues/?cursor={cursor}")
    assert response.status_code == 400, response.content
    assert "cursor" in response.json()


def test_a_cursor_past_everything_is_an_empty_page_that_leads_back(api_client: APIClient) -> None:
    dialogue = DialogueFactory()
    body = _get(api_client, f"/api/dialogues/?cursor=older-none-{'0' * 24}")
    assert body["results"] == [] and body["next"] is None and body["previous"] is not None
    assert [row["id"] for row in _get(api_client, body["previous"])["results"]] == [str(dialogue.pk)]


def test_the_channel_list_stays_a_plain_array(api_client: APIClient) -> None:
    ChannelFactory(), ChannelFactory()
    response = api_client.get("/api/channels/")
    assert response.status_code == 200
    assert isinstance(response.json(), list) and len(response.json()) == 2
    paged = api_client.get("/api/channels/?limit=1&offset=1").json()
    assert paged["count"] == 2 and len(paged["results"]) == 1


def test_the_browsable_api_draws_the_page(api_client: APIClient) -> None:
    dialogue = DialogueFactory()
    response = api_client.get("/api/dialogues/", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert str(dialogue.pk) in response.content.decode()


def test_every_cursor_the_schema_allows_is_served_and_no_other(api_client: APIClient) -> None:
    """An independent schemathesis run found `cursor=0` schema-valid yet answered 400: the
    schema's pattern now describes exactly the cursors the server reads."""
    dialogue = DialogueFactory()
    schema = api_client.get("/api/schema/?format=json").json()
    parameters = schema["paths"]["/api/dialogues/"]["get"]["parameters"]
    pattern = next(p for p in parameters if p["name"] == "cursor")["schema"]["pattern"]
    assert re.fullmatch(pattern, "0") is None
    newest = int((dialogue.last_message_at - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)).total_seconds() * 1e6)
    allowed = [
        f"older-{newest + 1}-{'f' * 24}",
        f"newer-0-{'0' * 24}",
        f"older-{'9' * 17}-{'a' * 24}",
        f"newer-none-{'0' * 24}",
        f"older-0-{'0' * 24}",
    ]
    for cursor in allowed:
        assert re.fullmatch(pattern, cursor), cursor
        response = api_client.get(f"/api/dialogues/?cursor={cursor}")
        assert response.status_code == 200, (cursor, response.content)
    assert [row["id"] for row in _get(api_client, f"/api/dialogues/?cursor={allowed[0]}")["results"]] == [
        str(dialogue.pk)
    ]


def test_a_walk_across_quiet_gaps_and_busy_stretches_is_exact(api_client: APIClient) -> None:
    """The list is read in slices of last_message_at sized as it goes
    (`dialogues.selectors.next_slice_width`): a few dialogues now, a quiet weekend, a busy
    stretch with ties, one a year back, a clock a little ahead, and some never active."""
    now = dt.datetime.now(dt.UTC)
    channel = ChannelFactory()
    times = [now + dt.timedelta(minutes=2), now - dt.timedelta(minutes=1), now - dt.timedelta(minutes=20)]
    times += [now - dt.timedelta(days=3, seconds=30 * i) for i in range(60)]  # busy, after a quiet weekend
    times += [now - dt.timedelta(days=3, seconds=30 * i) for i in range(0, 60, 7)]  # ties within it
    times += [now - dt.timedelta(days=365)]
    Dialogue.objects.bulk_create(
        [
            Dialogue(chat_bot_id=channel.chat_bot_id, channel=channel, chat_id=f"c-{i}", last_message_at=when)
            for i, when in enumerate(times)
        ]
        + [
            Dialogue(chat_bot_id=channel.chat_bot_id, channel=channel, chat_id=f"never-{n}", last_message_at=None)
            for n in range(3)
        ]
    )
    expected = _expected_order(list(Dialogue.objects.filter(channel=channel)))
    for url in ("/api/dialogues/?limit=7", f"/api/dialogues/?limit=7&channel_id={channel.pk}"):
        forward = _walk(api_client, url, "next")
        assert [row for page in forward for row in page] == expected, url
        last = _get(api_client, url)
        while last["next"]:
            last = _get(api_client, last["next"])
        assert _walk(api_client, last["previous"], "previous") == list(reversed(forward[:-1])), url
