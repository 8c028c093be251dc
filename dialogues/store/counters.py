"""Dialogues per bot. `dialogue_counters`: one document per bot, `{_id: <bot id>, dialogues: n}`,
the number of its dialogues opened through `channel_id`. Taken with one conditional `$inc`
before such a dialogue is created, given back when the creation loses the race, so two
creations at the limit cannot both pass (the `_id` makes the upsert of a full counter fail).
Read nowhere on the path of a message into an existing dialogue. Deleting a bot leaves its
counter behind (bot ids are never reused); deleting a channel leaves its dialogues counted:
`manage.py dialogue_counters_recount` sets every counter to the dialogues that exist.
"""

from __future__ import annotations

from typing import Any

from bson import ObjectId
from django.conf import settings
from pymongo import UpdateOne
from pymongo.errors import DuplicateKeyError

from core.errors import Conflict
from core.mongo import mongo_collection
from dialogues.store.collections import dialogues_collection

COUNTERS_COLLECTION = "dialogue_counters"


class DialogueLimitReached(Conflict):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"This bot has reached its limit of {limit} dialogues opened through channel_id; "
            "messages into its existing dialogues are still accepted"
        )


def counters_collection() -> Any:
    return mongo_collection(COUNTERS_COLLECTION)


def dialogue_counter_take(*, chat_bot_id: ObjectId) -> None:
    """Counts one more dialogue for the bot, or raises DialogueLimitReached when it has
    WEBHOOK_MAX_DIALOGUES_PER_BOT already (0: no limit, the count is still kept)."""
    limit = int(settings.WEBHOOK_MAX_DIALOGUES_PER_BOT)
    match: dict[str, Any] = {"_id": chat_bot_id}
    if limit:
        match["dialogues"] = {"$lt": limit}
    collection = counters_collection()
    try:
        collection.update_one(match, {"$inc": {"dialogues": 1}}, upsert=True)
        return
    except DuplicateKeyError:
        # The upsert found no counter below the limit and its insert collided: the counter
        # exists, at the limit, or it was just created by another first dialogue of the bot
        # at the same moment. Asked again without the insert, only the limit refuses.
        pass
    if collection.update_one(match, {"$inc": {"dialogues": 1}}).matched_count == 0:
        raise DialogueLimitReached(limit)


def dialogue_counter_give_back(*, chat_bot_id: ObjectId) -> None:
    counters_collection().update_one({"_id": chat_bot_id, "dialogues": {"$gt": 0}}, {"$inc": {"dialogues": -1}})


def dialogue_counters_recount() -> int:
    """Sets every bot's counter to its dialogues opened through `channel_id` that exist, and
    drops the counters of bots without any. Run while the webhook is quiet: a dialogue created
    during the recount may be counted twice or not at all. Returns the number of bots counted."""
    counts: dict[ObjectId, int] = {}
    projection = {"chat_bot_id": 1, "channel_id": 1, "chat_id": 1}
    for doc in dialogues_collection().find({}, projection):
        if doc.get("chat_id") != str(doc.get("channel_id")):
            counts[doc["chat_bot_id"]] = counts.get(doc["chat_bot_id"], 0) + 1
    collection = counters_collection()
    if counts:
        collection.bulk_write(
            [UpdateOne({"_id": bot}, {"$set": {"dialogues": n}}, upsert=True) for bot, n in counts.items()]
        )
    collection.delete_many({"_id": {"$nin": list(counts)}})
    return len(counts)
