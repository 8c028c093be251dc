"""Reads of bots for other rooms: the worker's look-up, other apps' admin pages."""

from __future__ import annotations

from collections.abc import Iterable

from bson import ObjectId

from chatbots.models import CannedReply, ChatBot
from core.caching import LookupCache

_bots_by_id = LookupCache()


def chatbot_cached(chat_bot_id: ObjectId) -> ChatBot | None:
    """The bot, read at most once per AUTH_CACHE_TTL_S per process."""
    return _bots_by_id.get_or_load(str(chat_bot_id), lambda: ChatBot.objects.filter(pk=chat_bot_id).first())


def chatbot_labels(bot_ids: Iterable[ObjectId]) -> dict[ObjectId, tuple[str, str]]:
    """(name, secret prefix) of each bot, in one read by id."""
    ids = list(set(bot_ids))
    if not ids:
        return {}
    rows = ChatBot.objects.filter(pk__in=ids).values_list("pk", "name", "secret_prefix")
    return {pk: (name, prefix) for pk, name, prefix in rows}


def canned_replies_of(chat_bot_id: ObjectId, *, limit: int = 500) -> list[dict[str, str]]:
    """The bot's canned replies, for the transcript's reply box."""
    rows = CannedReply.objects.filter(chat_bot_id=chat_bot_id).order_by("shortcut").values_list("shortcut", "text")
    return [{"shortcut": shortcut, "text": text} for shortcut, text in rows[:limit]]
