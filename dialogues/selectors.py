"""Reads of dialogues and their messages. Message history is keyset-paged on the model's
ordering (created_at, id), so a page costs the same in a dialogue of ten messages or of
a hundred thousand, and never loads the dialogue whole."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bson import ObjectId
from django.db.models import QuerySet
from django.utils import timezone
from pymongo import ASCENDING, DESCENDING

from channels_app.models import Channel, DeliveryState
from core.mongo import mongo_collection
from dialogues.models import Dialogue, Message

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


def dialogue_for_channel(*, channel: Channel) -> Dialogue | None:
    """The channel's own dialogue: in the existing contract its chat_id is the channel id.
    Looked up on the unique (chat_bot, channel, chat_id) index."""
    return Dialogue.objects.filter(chat_bot_id=channel.chat_bot_id, channel=channel, chat_id=str(channel.pk)).first()


def message_by_message_id(*, dialogue: Dialogue, message_id: str) -> Message | None:
    # The unique (dialogue, message_id) index answers this.
    return Message.objects.filter(dialogue=dialogue, message_id=message_id).first()


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


def pipeline_summary() -> dict[str, Any]:
    """The reply pipeline at a glance, for the Deliveries screen: counts by state (each an
    indexed count) and the channels whose breaker is open."""
    now = timezone.now()
    messages = Message.objects
    owed_states = [DeliveryState.PENDING, DeliveryState.FAILED]
    return {
        "not_generated": messages.filter(reply_state=Message.ReplyState.AWAITING).count(),
        "owed": messages.filter(delivery_state__in=owed_states).count(),
        "in_flight": messages.filter(delivery_state__in=owed_states, claimed_until__gt=now).count(),
        "parked": messages.filter(delivery_state=DeliveryState.PARKED).count(),
        "dead": messages.filter(delivery_state=DeliveryState.DEAD).count(),
        "no_reply": messages.filter(reply_state=Message.ReplyState.FAILED).count(),
        "open_breakers": list(
            Channel.objects.filter(breaker_open_until__isnull=False, consecutive_failures__gt=0)
            .order_by("breaker_open_until")
            .values("pk", "name", "consecutive_failures", "breaker_open_until")[:50]
        ),
    }
