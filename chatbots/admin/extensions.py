"""What the apps above this one add to a bot's pages.

This app may not import them (core <- chatbots <- channels_app <- dialogues), so they
register here: inlines for a bot's page, and per-bot counts for the list, each computed for
a whole page of bots at once (`counter(bot_ids) -> {bot_id: n}`, one grouped query)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.admin.options import InlineModelAdmin

from chatbots.models import ChatBot

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

# --- What the apps above this one add to a bot's pages ---------------------------------
#
# This app may not import them (core <- chatbots <- channels_app <- dialogues), so they
# register here: inlines for a bot's page, and per-bot counts for the list, each computed for
# a whole page of bots at once (`counter(bot_ids) -> {bot_id: n}`, one grouped query).


@dataclass(frozen=True)
class BotCount:
    name: str  # the list's column (and its CSS class, `field-<name>`)
    label: StrOrPromise
    counter: Callable[[list[Any]], dict[Any, int]]


BOT_INLINES: list[type[InlineModelAdmin]] = []
BOT_COUNTS: list[BotCount] = []


def register_bot_inline(inline: type[InlineModelAdmin]) -> None:
    if inline not in BOT_INLINES:
        BOT_INLINES.append(inline)


def register_bot_count(*, name: str, label: StrOrPromise, counter: Callable[[list[Any]], dict[Any, int]]) -> None:
    if all(count.name != name for count in BOT_COUNTS):
        BOT_COUNTS.append(BotCount(name=name, label=label, counter=counter))


def _count_column(count: BotCount) -> Callable[[ChatBot], int]:
    def column(obj: ChatBot) -> int:
        return getattr(obj, "registered_counts", {}).get(count.name, 0)

    column.__name__ = count.name
    return admin.display(description=count.label)(column)
