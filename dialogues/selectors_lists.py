"""Reads behind the operators' list pages (the admin's Dialogues and Deliveries). Each page is
one bounded read through an index, in one fixed order, continued by keyset: a page costs the
same at any size of the collections. No count of the whole list, no join, no sort of more than
a window (the embedded server sorts in memory what a query selects, docs/internals.md, "Known quirks")."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from django.utils import timezone
from pymongo import DESCENDING

from channels_app.models import Channel, DeliveryState
from core.datetimes import aware
from core.mongo import mongo_collection
from dialogues.models import PAUSED_INDEFINITELY, Delivery, Dialogue, Message
from dialogues.selectors import (
    BOT_CHANNELS_MERGED,
    DIALOGUE_SLICE_GROWTH,
    DIALOGUE_SLICES_MAX,
    SLICE_GROWTH,
    SLICES_MAX,
    DialoguePosition,
    _list_order,
    dialogue_keyset,
    newest_in_slices,
)
from dialogues.selectors_rows import PROBLEM_STATES

# A search reads at most this many index entries per field it looks in.
SEARCH_LIMIT = 200
# The "paused" and "delivery problems" filters read at most this many candidates (both are
# rare states); past it the page says so.
CANDIDATES_LIMIT = 2000
# A Deliveries filter checked on the rows read (in flight; a bot of very many channels) looks
# at most this many of the newest replies; past it the page says so.
CHECKED_SCAN_LIMIT = 500
# A filter checked on the rows read (the bot answering, in flight) reads at most this many
# batches of a page before it stops and says so.
WALK_BATCHES = 20
UNDELIVERED_STATES = [
    DeliveryState.PENDING.value,
    DeliveryState.FAILED.value,
    DeliveryState.DEAD.value,
    DeliveryState.PARKED.value,
]
DELIVERY_ROLES = {Message.Role.ASSISTANT.value, Message.Role.EMPLOYEE.value}


# --- Cursors: where a page ends, in the URL ------------------------------------------


def position_encode(when: datetime | None, pk: ObjectId) -> str:
    stamp = "" if when is None else str(int(when.timestamp() * 1_000_000))
    return f"{stamp}_{pk}"


def position_decode(cursor: str | None) -> tuple[datetime | None, ObjectId] | None:
    """(time, id) from `position_encode`, or None for a malformed cursor (the first page)."""
    if not cursor or "_" not in cursor:
        return None
    stamp, _sep, pk = cursor.partition("_")
    try:
        when = datetime.fromtimestamp(int(stamp) / 1_000_000, tz=UTC) if stamp else None
        return when, ObjectId(pk)
    except (ValueError, OverflowError, InvalidId, TypeError):
        return None


# --- Dialogues ------------------------------------------------------------------------


@dataclass(frozen=True)
class DialogueFilters:
    chat_bot_id: ObjectId | None = None
    channel_id: ObjectId | None = None
    paused: bool | None = None  # True: the bot is paused now; False: answering now
    problems: bool = False  # has failed or dead replies
    since: datetime | None = None  # last message at or after
    search: str = ""


@dataclass(frozen=True)
class ListPage:
    rows: list[Any]
    next_cursor: str | None
    cut_short: bool = False  # a bounded read stopped before it had looked at everything


_DIALOGUE_PROJECTION = {"_id": 1, "last_message_at": 1, "paused_until": 1, "chat_bot_id": 1, "channel_id": 1}


def _dialogue_docs(ids: Iterable[ObjectId]) -> list[dict[str, Any]]:
    wanted = list(ids)
    if not wanted:
        return []
    return list(
        mongo_collection(Dialogue._meta.db_table).find(
            {"_id": {"$in": wanted}},
            {"_id": 1, "last_message_at": 1, "paused_until": 1, "chat_bot_id": 1, "channel_id": 1},
        )
    )


def _place(doc: dict[str, Any]) -> DialoguePosition:
    return DialoguePosition(aware(doc.get("last_message_at")), doc["_id"])


def _keeps(doc: dict[str, Any], filters: DialogueFilters, now: datetime) -> bool:
    if filters.chat_bot_id is not None and doc.get("chat_bot_id") != filters.chat_bot_id:
        return False
    if filters.channel_id is not None and doc.get("channel_id") != filters.channel_id:
        return False
    if filters.paused is not None:
        until = aware(doc.get("paused_until"))
        if (until is not None and until > now) != filters.paused:
            return False
    if filters.since is not None:
        when = aware(doc.get("last_message_at"))
        if when is None or when < filters.since:
            return False
    return True


def dialogue_ids_by_search(term: str) -> tuple[list[ObjectId], bool]:
    """Dialogues a search names: a dialogue id, or the start of a customer chat id or of a
    message id (case-sensitive), each a range on its own index, at most SEARCH_LIMIT each.
    Also whether a limit was reached."""
    term = term.strip()
    if not term:
        return [], False
    found: dict[ObjectId, None] = {}
    if ObjectId.is_valid(term):
        found[ObjectId(term)] = None
    # A prefix as a string range: [term, term + the highest code point).
    prefix = {"$gte": term, "$lt": term + "\U0010ffff"}
    chats = list(mongo_collection(Dialogue._meta.db_table).find({"chat_id": prefix}, {"_id": 1}).limit(SEARCH_LIMIT))
    found.update(dict.fromkeys(doc["_id"] for doc in chats))
    messages = list(
        mongo_collection(Message._meta.db_table).find({"message_id": prefix}, {"dialogue_id": 1}).limit(SEARCH_LIMIT)
    )
    found.update(dict.fromkeys(doc["dialogue_id"] for doc in messages))
    return list(found), len(chats) >= SEARCH_LIMIT or len(messages) >= SEARCH_LIMIT


def _paused_places(
    filters: DialogueFilters, position: DialoguePosition | None, count: int, now: datetime
) -> tuple[list[DialoguePosition], bool]:
    """At least `count` of the paused dialogues past `position` in the list's order that the
    other filters keep (all of them if fewer), and whether a bound cut the read short. On the
    partial (paused_until, -last_message_at) index: the pauses that end by themselves are read
    whole (short-lived, so few at any time); those "until resumed" (one value of
    `paused_until`, and an operator may forget to resume) walk `last_message_at` back in
    slices, so a page pays for the slices it reads, not for every paused dialogue."""
    collection = mongo_collection(Dialogue._meta.db_table)
    mark = _list_order(position) if position is not None else None

    def past(doc: dict[str, Any]) -> bool:
        return mark is None or _list_order(_place(doc)) < mark

    timed = list(
        collection.find({"paused_until": {"$gt": now, "$lt": PAUSED_INDEFINITELY}}, _DIALOGUE_PROJECTION).limit(
            CANDIDATES_LIMIT
        )
    )
    places = [_place(doc) for doc in timed if past(doc) and _keeps(doc, filters, now)]
    # A bot or a channel is checked on what is read (a third field would leave the index on the
    # embedded server), so a slice is then read whole and at most CANDIDATES_LIMIT are looked at.
    checked_here = filters.chat_bot_id is not None or filters.channel_id is not None
    sort = [("last_message_at", DESCENDING), ("_id", DESCENDING)]
    scanned = slice_scanned = 0
    since = filters.since
    reached_since = False

    def read(when: object, wanted: int, extra: dict[str, Any] | None = None) -> list[DialoguePosition]:
        nonlocal scanned, slice_scanned, reached_since
        if since is not None and isinstance(when, dict):
            # Active since: the walk ends at `since` rather than reading all that is older.
            reached_since = when["$gte"] <= since
            when = {**when, "$gte": max(when["$gte"], since)}
            if "$lt" in when and when["$lt"] <= since:
                return []
        query = {"paused_until": PAUSED_INDEFINITELY, "last_message_at": when, **(extra or {})}
        docs = list(collection.find(query, _DIALOGUE_PROJECTION, sort=sort, limit=0 if checked_here else wanted))
        scanned += len(docs)
        slice_scanned = len(docs)
        return [_place(doc) for doc in docs if _keeps(doc, filters, now)]

    def spent() -> bool:
        return checked_here and scanned >= CANDIDATES_LIMIT

    def done() -> bool:
        return reached_since or spent()

    def sizing() -> tuple[int, int]:
        return slice_scanned, max(1, CANDIDATES_LIMIT - scanned)

    wanted = count + 1
    found: list[DialoguePosition] = []
    edge = position.last_message_at if position is not None else None
    if position is not None and edge is not None:
        found += read(edge, wanted, {"_id": {"$lt": position.id}})
    if position is None or edge is not None:
        if len(found) < wanted and not spent():
            found += newest_in_slices(
                edge or now, read, wanted - len(found), bounded=edge is not None, stop=done,
                sizing=sizing if checked_here else None, growth=DIALOGUE_SLICE_GROWTH, slices=DIALOGUE_SLICES_MAX,
                time_of=lambda place: place.last_message_at,
            )  # fmt: skip
        beyond: dict[str, Any] = {}
    else:
        beyond = {"_id": {"$lt": position.id}}
    if len(found) < wanted and since is None and not spent():
        # Never active (no last message): last in the list's order, by id.
        found += read(None, wanted - len(found), beyond)
    cut = len(timed) >= CANDIDATES_LIMIT or spent()
    return sorted(places + found, key=_list_order, reverse=True)[:wanted], cut


def paused_keyset(
    *, chat_bot_id: ObjectId | None, channel_id: ObjectId | None, position: DialoguePosition | None, count: int
) -> list[DialoguePosition] | None:
    """The next `count` dialogues whose bot is paused now, past `position` in the list's order
    (`_paused_places`), or None when its bound cut the read short (a bot or channel with few of
    the many paused dialogues): the caller then walks the list instead."""
    places, cut = _paused_places(
        DialogueFilters(chat_bot_id=chat_bot_id, channel_id=channel_id, paused=True), position, count, timezone.now()
    )
    return None if cut else places[:count]


def _problem_places(
    filters: DialogueFilters, position: DialoguePosition | None, count: int, now: datetime
) -> list[tuple[ObjectId, DialoguePosition]]:
    """Dialogues with failed or dead replies, by their latest such reply, newest first (the
    replies are read newest first on the (delivery_state, created_at) index, in windows). The
    position is that of the reply the previous page ended with."""
    wanted = DeliveryFilters(
        states=tuple(PROBLEM_STATES), chat_bot_id=filters.chat_bot_id, channel_id=filters.channel_id
    )
    before = (position.last_message_at, position.id) if position and position.last_message_at else None
    replies = sorted(
        _recent(
            PROBLEM_STATES,
            _delivery_channels(channel_id=filters.channel_id, chat_bot_id=filters.chat_bot_id),
            wanted,
            before,
            (count + 1) * 2,
            now,
        ),
        key=_delivery_order,
        reverse=True,
    )
    seen: dict[ObjectId, DialoguePosition] = {}
    for doc in replies:
        if doc["dialogue_id"] not in seen:
            # The place of the dialogue in this list is that of its latest problem reply.
            seen[doc["dialogue_id"]] = DialoguePosition(aware(doc["created_at"]), doc["_id"])
        if len(seen) > count:
            break
    return list(seen.items())


def dialogue_ids_with_problems(*, limit: int = CANDIDATES_LIMIT) -> list[ObjectId]:
    """Dialogues with failed or dead replies: one equality per state on the delivery index, at
    most `limit` replies each."""
    found: dict[ObjectId, None] = {}
    collection = mongo_collection(Message._meta.db_table)
    for state in PROBLEM_STATES:
        docs = collection.find({"delivery_state": state}, {"dialogue_id": 1}).limit(limit)
        found.update(dict.fromkeys(doc["dialogue_id"] for doc in docs))
    return list(found)


def _page_of(places: list[DialoguePosition], position: DialoguePosition | None, count: int) -> list[DialoguePosition]:
    ordered = sorted(places, key=_list_order, reverse=True)
    if position is not None:
        mark = _list_order(position)
        ordered = [place for place in ordered if _list_order(place) < mark]
    return ordered[: count + 1]


def dialogue_list_page(
    *, filters: DialogueFilters, cursor: str | None, count: int, now: datetime | None = None
) -> ListPage:
    """One page of the dialogue list, most recently active first (`-last_message_at`, `-id`);
    with `problems`, by their latest failed or dead reply instead."""
    now = now or timezone.now()
    decoded = position_decode(cursor)
    position = DialoguePosition(*decoded) if decoded is not None else None
    cut = False
    if filters.problems:
        pairs = _problem_places(filters, position, count, now)
        kept = {doc["_id"] for doc in _dialogue_docs(pk for pk, _place in pairs) if _keeps(doc, filters, now)}
        more = len(pairs) > count
        pairs = [(pk, place) for pk, place in pairs[:count] if pk in kept]
        rows = _dialogues_in_order([pk for pk, _place in pairs])
        last = pairs[-1][1] if pairs else None
        next_cursor = position_encode(last.last_message_at, last.id) if more and last is not None else None
        return ListPage(rows=rows, next_cursor=next_cursor)
    if filters.search:
        # A bounded set, read whole, then filtered and ordered here.
        ids, cut = dialogue_ids_by_search(filters.search)
        docs = [doc for doc in _dialogue_docs(ids) if _keeps(doc, filters, now)]
        places = _page_of([_place(doc) for doc in docs], position, count)
    elif filters.paused is True:
        places, cut = _paused_places(filters, position, count, now)
    else:
        walked = _walk(filters, position, count, now)
        cut = walked.cut
        places = list(walked[: count + 1])
    more = len(places) > count
    places = places[:count]
    rows = _dialogues_in_order([place.id for place in places])
    next_cursor = position_encode(places[-1].last_message_at, places[-1].id) if more and places else None
    return ListPage(rows=rows, next_cursor=next_cursor, cut_short=cut)


class _Walked(list[DialoguePosition]):
    cut = False


def _walk(filters: DialogueFilters, position: DialoguePosition | None, count: int, now: datetime) -> _Walked:
    """The keyset of the whole list (`dialogue_keyset`, by bot or channel), batch by batch,
    keeping the dialogues the other filters accept."""
    kept = _Walked()
    checks = filters.paused is not None or filters.since is not None
    for _batch in range(WALK_BATCHES):
        places = dialogue_keyset(
            chat_bot_id=filters.chat_bot_id,
            channel_id=filters.channel_id,
            position=position,
            count=count + 1,
            now=now,
            floor=filters.since,
        )
        if not places:
            return kept
        if not checks:
            kept.extend(places)
            return kept
        docs = {doc["_id"]: doc for doc in _dialogue_docs(place.id for place in places)}
        for place in places:
            doc = docs.get(place.id)
            if doc is not None and _keeps(doc, filters, now):
                kept.append(place)
        if len(kept) > count or len(places) <= count:
            return kept
        if filters.since is not None and (places[-1].last_message_at or filters.since) < filters.since:
            return kept  # the list's order: everything further is older still
        position = places[-1]
    kept.cut = True
    return kept


def _dialogues_in_order(ids: list[ObjectId]) -> list[Dialogue]:
    by_id = {dialogue.pk: dialogue for dialogue in Dialogue.objects.filter(pk__in=ids)}
    return [by_id[pk] for pk in ids if pk in by_id]


# --- Deliveries (replies not delivered yet) ------------------------------------------


@dataclass(frozen=True)
class DeliveryFilters:
    states: tuple[str, ...] = tuple(UNDELIVERED_STATES)
    in_flight: bool = False  # claimed by a worker now
    chat_bot_id: ObjectId | None = None
    channel_id: ObjectId | None = None
    dialogue_id: ObjectId | None = None
    search: str = ""


def _delivery_keeps(doc: dict[str, Any], filters: DeliveryFilters, now: datetime) -> bool:
    if doc.get("role") not in DELIVERY_ROLES or doc.get("delivery_state") not in filters.states:
        return False
    if filters.chat_bot_id is not None and doc.get("chat_bot_id") != filters.chat_bot_id:
        return False
    if filters.channel_id is not None and doc.get("channel_id") != filters.channel_id:
        return False
    if filters.dialogue_id is not None and doc.get("dialogue_id") != filters.dialogue_id:
        return False
    if filters.in_flight:
        claimed = aware(doc.get("claimed_until"))
        if claimed is None or claimed <= now:
            return False
    return True


_DELIVERY_PROJECTION = {
    "_id": 1, "created_at": 1, "role": 1, "delivery_state": 1, "chat_bot_id": 1, "channel_id": 1,
    "dialogue_id": 1, "claimed_until": 1,
}  # fmt: skip


def _delivery_order(doc: dict[str, Any]) -> tuple[datetime, ObjectId]:
    return aware(doc["created_at"]) or datetime.min.replace(tzinfo=UTC), doc["_id"]


def _delivery_channels(*, channel_id: ObjectId | None, chat_bot_id: ObjectId | None) -> list[ObjectId | None]:
    """The channels to read replies of, each on its own index: the one filtered, or a bot's
    (merged), or any (None)."""
    if channel_id is not None or chat_bot_id is None:
        return [channel_id]
    bot_channels = list(
        Channel.objects.filter(chat_bot_id=chat_bot_id).values_list("pk", flat=True)[: BOT_CHANNELS_MERGED + 1]
    )
    # Past that many, the bot is checked on what the state's index reads.
    return list(bot_channels) if len(bot_channels) <= BOT_CHANNELS_MERGED else [None]


def _recent(
    states: Iterable[str],
    channels: Iterable[ObjectId | None],
    filters: DeliveryFilters,
    before: tuple[datetime, ObjectId] | None,
    count: int,
    now: datetime,
    cut: list[bool] | None = None,
) -> list[dict[str, Any]]:
    """At least `count` of the newest replies older than `before` that the filters keep (all
    of them if fewer), in each of `states` (of each of `channels`; None: any channel): disjoint
    slices of created_at, walking back from `before` (`dialogues.selectors.next_slice_width`), on the
    (delivery_state, created_at) index, or (channel, delivery_state, created_at) for a channel,
    all states and channels in step. The slices before the one that completes `count` hold
    every newer reply, and a read sorts and pays for one slice's replies rather than all."""
    collection = mongo_collection(Message._meta.db_table)
    sort = [("created_at", DESCENDING), ("_id", DESCENDING)]
    pairs = [(channel, state) for channel in channels for state in states]
    # Where the filters may drop rows (a claim, a bot checked here), a window is read whole: a
    # limit would stop at the same rows in every wider window.
    checked_here = filters.in_flight or (filters.chat_bot_id is not None and None in channels)
    scanned = 0
    slice_scanned = 0

    def read(when: dict[str, Any] | datetime, wanted: int, extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        nonlocal scanned, slice_scanned
        # Each (channel, state) may hold all that is still wanted.
        limit = 0 if checked_here else wanted
        docs: list[dict[str, Any]] = []
        slice_scanned = 0
        for channel, state in pairs:
            # The index's fields first, in its order: the embedded server takes the first field's.
            lead: dict[str, Any] = {"channel_id": channel} if channel is not None else {}
            query = {**lead, "delivery_state": state, "created_at": when, **(extra or {})}
            for doc in collection.find(query, _DELIVERY_PROJECTION, sort=sort, limit=limit):
                scanned += 1
                slice_scanned += 1
                if _delivery_keeps(doc, filters, now):
                    docs.append(doc)
        return docs

    def sizing() -> tuple[int, int]:
        # Rows checked here: the next slice is sized to what is left of the scan's budget.
        return slice_scanned, max(1, CHECKED_SCAN_LIMIT - scanned)

    def spent() -> bool:
        # Rows checked here: at most CHECKED_SCAN_LIMIT of the newest are looked at.
        if checked_here and scanned >= CHECKED_SCAN_LIMIT:
            if cut is not None:
                cut.append(True)
            return True
        return False

    found: list[dict[str, Any]] = []
    if before is not None:
        found.extend(read(before[0], count, {"_id": {"$lt": before[1]}}))
        if len(found) >= count:
            return found
    edge = before[0] if before is not None else now
    # Over every channel (one read per state) the slices double, as the dialogue list's do: the
    # first busy slice after a quiet stretch is read whole under the embedded server's lock, and
    # growing fourfold it held up to three times the stretch (a 75 ms read at 100,000 messages).
    # Channel by channel they keep growing fourfold: doubling there cost a bot's page a round
    # trip per channel and slice (290 to 524 ms).
    every_channel = all(channel is None for channel, _state in pairs)
    return found + newest_in_slices(
        edge, read, count - len(found), bounded=before is not None, stop=spent,
        sizing=sizing if checked_here else None,
        growth=DIALOGUE_SLICE_GROWTH if every_channel else SLICE_GROWTH,
        slices=DIALOGUE_SLICES_MAX if every_channel else SLICES_MAX,
        time_of=lambda doc: aware(doc.get("created_at")),
    )  # fmt: skip


def delivery_list_page(
    *, filters: DeliveryFilters, cursor: str | None, count: int, now: datetime | None = None
) -> ListPage:
    """One page of the undelivered replies, newest first (`-created_at`, `-id`)."""
    now = now or timezone.now()
    decoded = position_decode(cursor)
    before = (decoded[0], decoded[1]) if decoded is not None and decoded[0] is not None else None
    collection = mongo_collection(Message._meta.db_table)
    cut = False
    if filters.search or filters.dialogue_id is not None:
        # A bounded set, read whole and ordered here: a message id's prefix (its index), or
        # one dialogue's messages (its index).
        if filters.search:
            term = filters.search.strip()
            query: dict[str, Any] = {"message_id": {"$gte": term, "$lt": term + "\U0010ffff"}}
        else:
            query = {"dialogue_id": filters.dialogue_id}
        docs = list(collection.find(query, _DELIVERY_PROJECTION).limit(CANDIDATES_LIMIT))
        cut = len(docs) >= CANDIDATES_LIMIT
        docs = [doc for doc in docs if _delivery_keeps(doc, filters, now)]
    else:
        channels = _delivery_channels(channel_id=filters.channel_id, chat_bot_id=filters.chat_bot_id)
        stopped: list[bool] = []
        docs = _recent(filters.states, channels, filters, before, count + 1, now, stopped)
        cut = bool(stopped)
    ordered = sorted(docs, key=_delivery_order, reverse=True)
    if before is not None:
        ordered = [doc for doc in ordered if _delivery_order(doc) < before]
    page = ordered[: count + 1]
    more = len(page) > count
    page = page[:count]
    ids = [doc["_id"] for doc in page]
    # Delivery (the proxy) by _id alone: its manager's filters would make the query an `$and`.
    by_id = {message.pk: message for message in Delivery._base_manager.filter(pk__in=ids)}
    rows = [by_id[pk] for pk in ids if pk in by_id]
    last = page[-1] if page else None
    next_cursor = position_encode(aware(last["created_at"]), last["_id"]) if more and last is not None else None
    return ListPage(rows=rows, next_cursor=next_cursor, cut_short=cut)


def message_by_pk_in_dialogue(*, dialogue: Dialogue, pk: ObjectId) -> Message | None:
    """A message of `dialogue` by its id: read by `_id` alone, then checked (with the dialogue
    in the filter the embedded server scans the dialogue's messages instead of using `_id`)."""
    message = Message.objects.filter(pk=pk).first()
    return message if message is not None and message.dialogue_id == dialogue.pk else None


def messages_by_ids(ids: list[Any]) -> list[Message]:
    return list(Message.objects.filter(pk__in=ids))


def delivery_by_pk(pk: object) -> Delivery | None:
    """A reply not yet delivered, by its id: read by `_id` alone, then checked (the proxy's
    manager would make the filter an `$and`, which the embedded server answers with a scan)."""
    try:
        oid = ObjectId(str(pk))
    except (InvalidId, TypeError):
        return None
    found = Delivery._base_manager.filter(pk=oid).first()
    if found is None or found.role not in DELIVERY_ROLES or found.delivery_state not in UNDELIVERED_STATES:
        return None
    return found
