"""Canned replies, per bot: operators insert one into the transcript's reply box by typing `/`
and a few letters of its shortcut (dialogues/static/dialogues/canned.js)."""

from __future__ import annotations

from django.contrib import admin
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _

from chatbots.models import CannedReply


@admin.register(CannedReply)
class CannedReplyAdmin(admin.ModelAdmin):
    list_display = ("shortcut_display", "chat_bot", "text_preview")
    list_filter = ("chat_bot",)
    search_fields = ("shortcut", "text")
    autocomplete_fields = ("chat_bot",)
    fields = ("chat_bot", "shortcut", "text")

    @admin.display(description=_("shortcut"), ordering="shortcut")
    def shortcut_display(self, obj: CannedReply) -> str:
        return f"/{obj.shortcut}"

    @admin.display(description=_("text"))
    def text_preview(self, obj: CannedReply) -> str:
        return Truncator(obj.text).chars(100)
