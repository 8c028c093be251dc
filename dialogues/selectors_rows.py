"""What a list page shows beside each row, read for the page's rows only (never joined to the
list's read): each dialogue's last message and failed and dead replies, and the names of the
rows' bots, channels and dialogues. Each read is bounded by the page, whatever the collections'
sizes (docs/internals.md, "Known quirks": the embedded server holds its storage lock for a
read's whole range)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from bson import ObjectId

from channels_app.models import Channel, DeliveryState
from chatbots.models import ChatBot
from core.mongo import mongo_collection
from dialogues.models import Dialogue, Message

PROBLEM_STATES = [DeliveryState.FAILED.value, DeliveryState.DEAD.value]


# The last message of each dialogue of a list page sits at one of the last few positions
# (`seq`) it handed out: a customer message reserves its own and its reply's, and duplicates
# leave gaps.
PREVIEW_SEQ_WINDOWS = (4, 32)
_PREVIEW_PROJECTION = {
    "dialogue_id": 1, "seq": 1, "text": 1, "role": 1, "created_at": 1, "attachments.name": 1, "delivery_state": 1,
}  # fmt: skip


def dialogue_last_messages(dialogues: list[Dialogue]) -> dict[ObjectId, dict[str, Any]]:
    """The last message of each dialogue of a list page: one read per row of at most a few
    index entries (dialogue equal, `seq` from a few below the dialogue's last), so a page costs
    the same whatever the dialogues' lengths and the collection's size.

    Not one read for several rows: every batched form scans the dialogues whole on the embedded
    server (`$in` on dialogue and seq, `$unionWith`, a top-level `$or`), under its storage-wide
    lock (docs/internals.md, "Known quirks"): at 250,000 messages a page's 50 short dialogues
    were 496 messages, read in 46-49 ms, where 50 point reads take 55-68 ms however long the
    dialogues are (1.2 ms each under webhook traffic) and hold the lock a fraction of a
    millisecond each. On MongoDB proper one `$in` query would do."""
    found: dict[ObjectId, dict[str, Any]] = {}
    collection = mongo_collection(Message._meta.db_table)
    for dialogue in dialogues:
        for window in PREVIEW_SEQ_WINDOWS:
            if not dialogue.last_seq:
                break
            docs = list(
                collection.find(
                    {"dialogue_id": dialogue.pk, "seq": {"$gte": max(dialogue.last_seq - window + 1, 0)}},
                    _PREVIEW_PROJECTION,
                ).limit(window)
            )
            if docs:
                found[dialogue.pk] = max(docs, key=lambda doc: doc.get("seq") or 0)
                break
    return found


def dialogue_problem_counts(dialogues: list[Dialogue]) -> dict[ObjectId, int]:
    """Failed and dead replies per dialogue of a page: one read per state on its partial index
    (`message_failed_by_dialogue`, `message_dead_by_dialogue`), which holds only the replies in
    that state, so a read costs the page's problem replies, never a dialogue's history. Before
    them a dialogue of up to 500 messages was read whole (18-32 ms under the embedded server's
    storage-wide lock for one of 40 to 128 messages), and a longer one's channel's failed and
    dead replies."""
    if not dialogues:
        return {}
    ids = [d.pk for d in dialogues]
    collection = mongo_collection(Message._meta.db_table)
    counts: dict[ObjectId, int] = {}
    for state in PROBLEM_STATES:
        # The dialogue first: the embedded server serves a filter by its first field's index.
        for doc in collection.find({"dialogue_id": {"$in": ids}, "delivery_state": state}, {"dialogue_id": 1}):
            counts[doc["dialogue_id"]] = counts.get(doc["dialogue_id"], 0) + 1
    return counts


def dialogue_page_details(
    dialogues: list[Dialogue],
) -> tuple[dict[ObjectId, dict[str, Any]], dict[ObjectId, int]]:
    """A list page's last messages (`dialogue_last_messages`) and problem counts
    (`dialogue_problem_counts`): a point read per row and two reads for the page."""
    return dialogue_last_messages(dialogues), dialogue_problem_counts(dialogues)


def related_names(rows: list[Any]) -> dict[ObjectId, str]:
    """The bots' and channels' names of a list page, by id (two small reads), instead of a
    join: `list_select_related` makes the ORM `$lookup` over every row before its `$match`."""
    bots = {row.chat_bot_id for row in rows}
    channels = {row.channel_id for row in rows}
    return {
        **dict(ChatBot.objects.filter(pk__in=list(bots)).values_list("pk", "name")),
        **dict(Channel.objects.filter(pk__in=list(channels)).values_list("pk", "name")),
    }


def channel_breakers(channel_ids: Iterable[ObjectId]) -> dict[ObjectId, datetime]:
    """The open breakers among a list page's channels: when each lets its probe through."""
    return dict(
        Channel.objects.filter(
            pk__in=list(set(channel_ids)), breaker_open_until__isnull=False, consecutive_failures__gt=0
        ).values_list("pk", "breaker_open_until")
    )


def dialogue_chat_ids(dialogue_ids: Iterable[ObjectId]) -> dict[ObjectId, str]:
    return dict(Dialogue.objects.filter(pk__in=list(set(dialogue_ids))).values_list("pk", "chat_id"))
