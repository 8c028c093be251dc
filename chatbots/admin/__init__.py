"""Operators' screens for bots: `bots` (the list and a bot's pages), `reveal` (a secret shown
once), `extensions` (what the apps above add to a bot's pages). Importing the package
registers the bot admin."""

from chatbots.admin import canned  # noqa: F401  (registers the canned replies' admin)
from chatbots.admin.bots import EDITABLE_PAUSE_FIELDS, PAUSE_FIELDS, ChatBotAdmin, ChatBotForm
from chatbots.admin.extensions import register_bot_count, register_bot_inline
from chatbots.admin.reveal import REVEAL_NAMESPACE

__all__ = [
    "EDITABLE_PAUSE_FIELDS",
    "PAUSE_FIELDS",
    "REVEAL_NAMESPACE",
    "ChatBotAdmin",
    "ChatBotForm",
    "register_bot_count",
    "register_bot_inline",
]
