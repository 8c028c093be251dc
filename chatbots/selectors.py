"""Reads of bots for other rooms (the worker)."""

from __future__ import annotations

from bson import ObjectId

from chatbots.models import ChatBot
from core.caching import LookupCache

_bots_by_id = LookupCache()


def chatbot_cached(chat_bot_id: ObjectId) -> ChatBot | None:
    """The bot, read at most once per AUTH_CACHE_TTL_S per process."""
    return _bots_by_id.get_or_load(str(chat_bot_id), lambda: ChatBot.objects.filter(pk=chat_bot_id).first())
