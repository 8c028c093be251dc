"""Reads of dialogues and their messages. Message history is keyset-paged on the model's
ordering (created_at, id), so a page costs the same in a dialogue of ten messages or of
a hundred thousand, and never loads the dialogue whole."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from django.db.models import Lookup, QuerySet
from django.utils import timezone
from django_mongodb_backend.query_utils import process_lhs, process_rhs
from pymongo import ASCENDING, DESCENDING

from channels_app.models import Channel
from core.caching import LookupCache
from core.datetimes import aware
from core.mongo import mongo_collection
from dialogues.models import Dialogue, Message
from dialogues.store.messages import message_find
from dialogues.store.reservation import dialogue_id_find

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class MessagePage:
    """`messages` oldest first. `has_more`: more messages exist beyond the page in the
    direction of travel (older ones for the latest page and `before`, newer for `after`)."""

    messages: list[Message]
    has_more: bool


def dialogue_list(
    *, chat_bot_id: object | None = None, channel_id: object | None = None, chat_id: str | None = None
) -> QuerySet[Dialogue]:
    dialogues = Dialogue.objects.all()
    if chat_bot_id is not None:
        dialogues = dialogues.filter(chat_bot_id=chat_bot_id)
    if channel_id is not None:
        dialogues = dialogues.filter(channel_id=channel_id)
    if chat_id is not None:
        dialogues = dialogues.filter(chat_id=chat_id)
    return dialogues


# A page of dialogues, most recently active first, is read from disjoint slices of
# `last_message_at`, walking away from the page's start, then from all that is beyond them: a
# server that sorts in memory and reads a whole index range before it applies the limit (the
# embedded one does, docs/internals.md, "Known quirks") pays for the dialogues of the slices it reads, not
# for every dialogue. A slice grows fourfold while the slices before it were empty and is sized to
# what is still wanted once dialogues show up, so a quiet weekend before a busy week is crossed
# in a few cheap reads and the busy week is not read whole. Exact: the slices cover the time
# line without gaps or overlaps, in the list's order.
SLICE_FIRST = timedelta(minutes=5)
SLICE_MIN = timedelta(seconds=1)
SLICE_GROWTH = 4
# 5 minutes x 4**11: forty years; what lies beyond is read in one last range.
SLICES_MAX = 12
# The dialogue list (admin and API) doubles instead: the slice that first reaches busy data
# after a quiet stretch is then at most as wide as the stretch (plus the first slice), against
# three times as wide. That slice is read whole by the embedded server under its storage-wide
# lock, so every webhook write waits for it: at 100,000 messages one such read took 64 ms
# growing fourfold and 23-27 ms doubling, and the webhook's p99 beside back-to-back dialogue
# lists fell from 46 to 28 ms (docs/benchmarks.md, session 10). The Deliveries lists keep
# growing fourfold: they walk each channel of a bot, and doubling took one of them from 290 to
# 524 ms. 5 minutes x 2**23: eighty years.
DIALOGUE_SLICE_GROWTH = 2
DIALOGUE_SLICES_MAX = 24
# Where the dense part of a dialogue list last began below a quiet stretch, by list (its channel
# or bot): the newest of those dialogues and their density, from the rows a walk from the top
# found (`_busy_start`). Any later slice that would reach past that start is cut to hold what the
# walk still wants there: doubling, the slice that first reached it held 0 to 1.3 times the
# stretch's width, whichever way the slices fell (the seed's 3 quiet days: 100 to 921 dialogues
# read whole, 6-55 ms under the embedded server's lock, from one run to the next), and a few
# dialogues scattered through the stretch (sized from their sparse density) made it wider still.
# A hint only: the slices still cover the time line, and a hint gone stale (those dialogues
# moved up since) costs a few more slices. Kept 5 minutes.
_busy_hints = LookupCache(maxsize=1024, ttl_s=lambda: 300.0)
# A gap this many times the mean spacing of the rows below it (and at least a first slice
# wide) is a quiet stretch; the rows below it are the dense part.
BUSY_GAP = 10
BUSY_TAIL_MIN = 3


def _busy_start(top: datetime, times: list[datetime]) -> tuple[datetime, float] | None:
    """The oldest quiet stretch among a walk's row times (newest first, walked down from
    `top`): the newest row below it and the rows' density below it, a second. None without one."""
    oldest = times[-1] if times else top
    for i in range(len(times) - BUSY_TAIL_MIN, -1, -1):
        span = (times[i] - oldest).total_seconds()
        gap = (times[i - 1] if i else top) - times[i]
        if gap >= SLICE_FIRST and gap.total_seconds() > BUSY_GAP * max(span / (len(times) - 1 - i), 1.0):
            return times[i], (len(times) - i) / max(span, 1.0)
    return None


def _busy_hint_far(key: tuple[object, object], edge: datetime, far: datetime, wanted: int) -> datetime:
    """A slice's far end: `far`, or nearer if the hint puts the dense part's start within the
    slice (from `edge` down to `far`): then just far enough to hold `wanted` of it."""
    hint = _busy_hints.get(key)
    if hint is None or not far < hint[0] < edge:
        return far
    return max(far, hint[0] - timedelta(seconds=wanted * 1.25 / hint[1]))


def next_slice_width(width: timedelta, got: int, wanted: int, *, growth: int = SLICE_GROWTH) -> timedelta:
    """The next slice's width: `growth` times this one's while it held nothing, else the
    width that should hold what is still `wanted` at this slice's density (a quarter more, and
    never more than `growth` times this one's). Each read costs a round trip (about 6 ms
    under webhook traffic on the embedded server), so an empty stretch is crossed in a few."""
    if got == 0:
        return width * growth
    fitted = width * (wanted * 1.25 / got)
    return max(SLICE_MIN, min(width * growth, fitted))


def occupied_width[T](
    width: timedelta, far: datetime, rows: list[T], time_of: Callable[[T], datetime | None] | None
) -> timedelta:
    """The part of a slice (`width` wide, reaching back to `far`) from its newest row on: where
    its rows lie (the rest of it was empty). The whole width without rows or their times."""
    times = [when for when in map(time_of, rows) if when is not None] if time_of is not None and rows else []
    if not times:
        return width
    return max(SLICE_MIN, min(width, max(times) - far))


def newest_in_slices[T](
    edge: datetime,
    read: Callable[[dict[str, Any], int], list[T]],
    wanted: int,
    *,
    bounded: bool,
    stop: Callable[[], bool] = lambda: False,
    sizing: Callable[[], tuple[int, int]] | None = None,
    growth: int = SLICE_GROWTH,
    slices: int = SLICES_MAX,
    time_of: Callable[[T], datetime | None] | None = None,
) -> list[T]:
    """`wanted` of the newest rows before `edge` (all of them if fewer): `read(when, still
    wanted)` over disjoint slices of a time field walking back from `edge` (sized by
    `next_slice_width`), then one range over all that is older; newer slices first, so every
    slice before the one that completes `wanted` is read whole. Without `bounded` the first
    slice has no end (a clock a little ahead still counts). `stop` ends the walk early.

    `sizing`: where `read` checks rows itself and keeps few of those it reads, what sizes the
    next slice instead of the rows kept: (rows the last slice read, rows still to read). Without
    it a slice that kept none grew fourfold however many it read, so the last one read before
    `stop` could hold several times what was left to read, and more the denser the data.

    `growth` and `slices`: how fast an empty slice widens, and how many slices before the last
    range (together they must reach decades back).

    `time_of`: a row's time. With it, the density that sizes the next slice is that of the part
    of this slice from its newest row on (`occupied_width`): the first busy slice after a quiet
    stretch is mostly the stretch, and sized by its whole width the next one held several
    times what was still wanted."""
    found: list[T] = []
    width = SLICE_FIRST
    for step in range(slices):
        far = edge - width
        rows = read({"$gte": far, **({"$lt": edge} if step or bounded else {})}, wanted - len(found))
        found.extend(rows)
        if len(found) >= wanted or stop():
            return found
        got, still = sizing() if sizing is not None else (len(rows), wanted - len(found))
        width, edge = next_slice_width(occupied_width(width, far, rows, time_of), got, still, growth=growth), far
    return found + read({"$gte": EPOCH, "$lt": edge}, wanted - len(found))


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class DialoguePosition:
    """A place in the dialogue list's order (`-last_message_at`, `-id`; never-active
    dialogues, whose last_message_at is null, last)."""

    last_message_at: datetime | None
    id: ObjectId


def _dialogue_query(*, channel_id: object | None, chat_bot_id: object | None, when: object) -> dict[str, Any]:
    # One of: a channel and a time range, read on the (channel, -last_message_at) index; a time
    # range, on (-last_message_at), with the bot checked on what it reads (the bot's own index
    # would read every dialogue of the bot). Never more fields: with a third one the embedded
    # server leaves the compound index and reads far more.
    if channel_id is not None:
        return {"channel_id": channel_id, "last_message_at": when}
    query: dict[str, Any] = {"last_message_at": when}
    if chat_bot_id is not None:
        query["chat_bot_id"] = chat_bot_id
    return query


# Up to this many channels, a bot's dialogues are read channel by channel (`dialogue_keyset`).
BOT_CHANNELS_MERGED = 50


def _list_order(place: DialoguePosition) -> tuple[bool, datetime, ObjectId]:
    """Ascending in this key is the list's order reversed: never-active dialogues first."""
    return place.last_message_at is not None, place.last_message_at or EPOCH, place.id


def dialogue_keyset(
    *,
    chat_bot_id: object | None = None,
    channel_id: object | None = None,
    chat_id: str | None = None,
    position: DialoguePosition | None = None,
    newer: bool = False,
    count: int,
    now: datetime | None = None,
    floor: datetime | None = None,
) -> list[DialoguePosition]:
    """The next `count` dialogues past `position` in the list's order (from the top without
    one), or with `newer` the `count` before it, nearest first. Raw reads, each a bounded
    index range (an ORM filter on several fields is an `$and`, which the embedded server
    answers with a scan, and its sort would be of every dialogue). `floor`: walking down, none
    active before it (nor the never-active ones)."""
    if chat_id is not None:
        return _chat_keyset(
            chat_bot_id=chat_bot_id, channel_id=channel_id, chat_id=chat_id, position=position, newer=newer, count=count
        )
    if channel_id is not None and chat_bot_id is not None:
        # A channel's dialogues are its bot's: the bot is checked once, on the channel.
        if not Channel.objects.filter(pk=channel_id, chat_bot_id=chat_bot_id).exists():
            return []
        chat_bot_id = None
    if chat_bot_id is not None and channel_id is None:
        channels = list(
            Channel.objects.filter(chat_bot_id=chat_bot_id).values_list("pk", flat=True)[: BOT_CHANNELS_MERGED + 1]
        )
        if len(channels) <= BOT_CHANNELS_MERGED:
            # Channel by channel on the (channel, -last_message_at) index, merged: each read is
            # bounded by its channel's dialogues, where a window over every dialogue would widen
            # until it held enough of this bot's, however few it has.
            merged = [
                place
                for channel in channels
                for place in dialogue_keyset(
                    channel_id=channel, position=position, newer=newer, count=count, now=now, floor=floor
                )
            ]
            return sorted(merged, key=_list_order, reverse=not newer)[:count]
    collection = mongo_collection(Dialogue._meta.db_table)
    order = ASCENDING if newer else DESCENDING
    found: list[DialoguePosition] = []

    def read(when: object, extra: dict[str, Any] | None = None, *, by_id_only: bool = False) -> bool:
        """Appends what `when` (and `extra`) select, in walking order; True once `count` are found."""
        sort = [("_id", order)] if by_id_only else [("last_message_at", order), ("_id", order)]
        docs = collection.find(
            {**_dialogue_query(channel_id=channel_id, chat_bot_id=chat_bot_id, when=when), **(extra or {})},
            projection={"_id": 1, "last_message_at": 1},
            sort=sort,
            limit=count - len(found),
        )
        found.extend(DialoguePosition(aware(doc.get("last_message_at")), doc["_id"]) for doc in docs)
        return len(found) >= count

    hint_key = (channel_id, chat_bot_id)

    def dated(bound: datetime | None) -> bool:
        """Dialogues with a last message time strictly past `bound` (all of them without one),
        slice by slice (`next_slice_width`); True once `count` are found or `floor` reached."""
        # $gte/$lt/$gt only: the embedded server's $lte on dates drops equal values.
        if newer and bound is None:
            return read({"$gte": EPOCH})
        top = edge = bound or now or timezone.now()
        width = SLICE_FIRST
        for step in range(DIALOGUE_SLICES_MAX):
            got = len(found)
            if newer:
                # The first slice starts just past the bound; the last read, below, has no end.
                far = edge + width
                when = {"$gt" if step == 0 else "$gte": edge, "$lt": far}
            else:
                far = _busy_hint_far(hint_key, edge, edge - width, count - got)
                far = max(far, floor) if floor is not None else far
                width = edge - far
                # Without a bound the first slice has no end: a clock a little ahead still counts.
                when = {"$gte": far, **({"$lt": edge} if step or bound is not None else {})}
            full = read(when)
            read_now = found[got:]
            if full and bound is None and not newer:
                times = [place.last_message_at for place in found if place.last_message_at is not None]
                if (start := _busy_start(top, times)) is not None:
                    _busy_hints.set(hint_key, start)
            if full or (floor is not None and far <= floor and not newer):
                return True
            # (Walking forward, toward newer rows, the whole width.)
            occupied = width if newer else occupied_width(width, far, read_now, lambda place: place.last_message_at)
            width, edge = (
                next_slice_width(occupied, len(read_now), count - len(found), growth=DIALOGUE_SLICE_GROWTH),
                far,
            )
        return read({"$gte": edge} if newer else {"$gte": floor or EPOCH, "$lt": edge}) or floor is not None

    if position is None:
        if newer:
            return []
        if not dated(None):
            read(None, by_id_only=True)
        return found
    beyond = {"_id": {"$gt" if newer else "$lt": position.id}}
    if position.last_message_at is None:
        if floor is not None and not newer:
            return found
        # Among the never-active dialogues (by id alone), then, going back up, all the others.
        if not read(None, beyond, by_id_only=True) and newer:
            dated(None)
        return found
    if read(position.last_message_at, beyond, by_id_only=True) or dated(position.last_message_at):
        return found
    if not newer:
        read(None, by_id_only=True)
    return found


def _chat_keyset(
    *,
    chat_bot_id: object | None,
    channel_id: object | None,
    chat_id: str,
    position: DialoguePosition | None,
    newer: bool,
    count: int,
) -> list[DialoguePosition]:
    """A chat id names a handful of dialogues (one per bot and channel): all read on the
    chat_id index, the rest done here."""
    docs = mongo_collection(Dialogue._meta.db_table).find(
        {"chat_id": chat_id}, projection={"_id": 1, "last_message_at": 1, "chat_bot_id": 1, "channel_id": 1}
    )
    places = [
        DialoguePosition(aware(doc.get("last_message_at")), doc["_id"])
        for doc in docs
        if (chat_bot_id is None or doc.get("chat_bot_id") == chat_bot_id)
        and (channel_id is None or doc.get("channel_id") == channel_id)
    ]
    if position is not None:
        mark = _list_order(position)
        places = [place for place in places if (_list_order(place) > mark) == newer and _list_order(place) != mark]
    elif newer:
        return []
    return sorted(places, key=_list_order, reverse=not newer)[:count]


def dialogues_by_id(ids: list[ObjectId]) -> list[Dialogue]:
    """The dialogues in the order of `ids` (one `_id` read)."""
    by_id = {dialogue.pk: dialogue for dialogue in Dialogue.objects.filter(pk__in=ids)}
    return [by_id[pk] for pk in ids if pk in by_id]


def dialogue_for_channel(*, channel: Channel) -> Dialogue | None:
    """The channel's own dialogue: in the existing contract its chat_id is the channel id.
    Found by its key as the webhook finds it (an ORM filter on the three fields is an `$and`,
    which the embedded server answers with a scan: docs/internals.md, "Known quirks"), then read by id."""
    dialogue_id = dialogue_id_find(chat_bot_id=channel.chat_bot_id, channel_id=channel.pk, chat_id=str(channel.pk))
    return Dialogue.objects.filter(pk=dialogue_id).first() if dialogue_id is not None else None


def message_by_message_id(*, dialogue: Dialogue, message_id: str) -> Message | None:
    """Found as the webhook finds a duplicate (plain equalities led by `message_id`, its own
    index: `dialogues.store.messages.message_find`), then read by id. The ORM's filter on the
    two is an `$and`, which the embedded server answers with a scan of every message."""
    found = message_find(dialogue_id=dialogue.pk, message_id=message_id)
    return Message.objects.filter(pk=found["_id"]).first() if found is not None else None


# The latest page is first looked for among the messages of the last few minutes, then of a
# window 12 times wider, and so on: a server that sorts in memory (the embedded one does)
# then reads a recent slice instead of the whole dialogue. Exact: if a window holds enough
# messages, every newer message is inside it.
LATEST_WINDOWS = [timedelta(minutes=5) * 12**step for step in range(4)]


def _latest(
    window: Callable[[dict[str, Any], int], list[ObjectId]], *, dialogue: Dialogue, wanted: int
) -> list[ObjectId]:
    if dialogue.last_message_at is not None and dialogue.message_count > wanted:
        for span in LATEST_WINDOWS:
            # $gte only: the embedded server's $lte on dates drops equal values.
            ids = window({"created_at": {"$gte": dialogue.last_message_at - span}}, wanted)
            if len(ids) >= wanted:
                return ids
    return window({}, wanted)


def message_page(
    *,
    dialogue: Dialogue,
    before: Message | None = None,
    after: Message | None = None,
    limit: int = DEFAULT_PAGE_SIZE,
) -> MessagePage:
    """Without a cursor: the latest `limit` messages. `before`: the `limit` messages just
    older than that one; `after`: the `limit` just newer. Always returned oldest first."""
    if before is not None and after is not None:
        raise ValueError("before and after are exclusive")
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    collection = mongo_collection(Message._meta.db_table)
    newer = after is not None
    direction = ASCENDING if newer else DESCENDING
    cursor = after or before

    def window(query: dict[str, Any], count: int) -> list[ObjectId]:
        # Raw pymongo: the ORM's aggregate puts an $addFields before the $sort, which stops
        # MongoDB from reading the order off the (dialogue, created_at, _id) index.
        found = collection.find(
            {"dialogue_id": dialogue.pk, **query},
            projection={"_id": 1},
            sort=[("dialogue_id", direction), ("created_at", direction), ("_id", direction)],
            limit=count,
        )
        return [doc["_id"] for doc in found]

    # One more than asked for tells whether anything lies beyond the page.
    wanted = limit + 1
    if cursor is None:
        ids = _latest(window, dialogue=dialogue, wanted=wanted)
    else:
        # Two plain range queries instead of one $or: each gets tight index bounds (an $or
        # makes some planners scan the whole collection). First the messages that share the
        # cursor's timestamp and lie beyond it by id, then the strictly newer/older ones.
        ties = window({"created_at": cursor.created_at, "_id": {"$gt" if newer else "$lt": cursor.pk}}, wanted)
        ids = ties
        if len(ties) < wanted:
            ids = ties + window({"created_at": {"$gt" if newer else "$lt": cursor.created_at}}, wanted - len(ties))
    has_more = len(ids) > limit
    ids = ids[:limit]
    if not newer:
        ids.reverse()
    by_id = {message.pk: message for message in Message.objects.filter(pk__in=ids)}
    return MessagePage(messages=[by_id[pk] for pk in ids if pk in by_id], has_more=has_more)


# --- Hand-off ----------------------------------------------------------------------------


class NotAfter(Lookup):
    """`paused_until__notafter=now`: null, missing or not later than `now`, as one field
    condition (`$not: {$gt}`). `exclude(paused_until__gt=now)` would compile to a top-level
    `$nor`, which the embedded server answers with a scan of the whole collection."""

    lookup_name = "notafter"

    def as_mql_path(self, compiler: Any, connection: Any) -> dict[str, Any]:
        lhs = process_lhs(self, compiler, connection)
        rhs = process_rhs(self, compiler, connection)
        return {lhs: {"$not": {"$gt": rhs}}}

    def as_mql_expr(self, compiler: Any, connection: Any) -> dict[str, Any]:
        lhs = process_lhs(self, compiler, connection, as_expr=True)
        rhs = process_rhs(self, compiler, connection, as_expr=True)
        return {"$not": [{"$gt": [lhs, rhs]}]}


Dialogue._meta.get_field("paused_until").register_lookup(NotAfter)


def dialogues_by_pause(dialogues: QuerySet[Dialogue], *, paused: bool) -> QuerySet[Dialogue]:
    """Dialogues whose bot is paused now (`paused`), or active now (never paused, resumed, or
    whose pause has run out)."""
    now = timezone.now()
    if paused:
        return dialogues.filter(paused_until__gt=now)
    return dialogues.filter(paused_until__notafter=now)


TRANSCRIPT_SIZE = 50


def dialogue_transcript(*, dialogue: Dialogue, limit: int = TRANSCRIPT_SIZE) -> list[Message]:
    """The latest messages, oldest first (the operator's chat view)."""
    return message_page(dialogue=dialogue, limit=limit).messages


def message_created_at(*, dialogue_id: ObjectId, message_id: str) -> datetime | None:
    """When a message arrived, by the unique (dialogue, message_id) index."""
    found = mongo_collection(Message._meta.db_table).find_one(
        {"dialogue_id": dialogue_id, "message_id": message_id}, projection={"created_at": 1, "_id": 0}
    )
    return None if found is None else found.get("created_at")
