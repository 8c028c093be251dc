"""Reads of bots for other apps' pages."""

from __future__ import annotations

from collections.abc import Iterable

from bson import ObjectId

from chatbots.models import ChatBot


def chatbot_labels(bot_ids: Iterable[ObjectId]) -> dict[ObjectId, tuple[str, str]]:
    """(name, secret prefix) of each bot, in one read by id."""
    ids = list(set(bot_ids))
    if not ids:
        return {}
    rows = ChatBot.objects.filter(pk__in=ids).values_list("pk", "name", "secret_prefix")
    return {pk: (name, prefix) for pk, name, prefix in rows}
