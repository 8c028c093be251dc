"""The operators' Dialogues screen: the list (read in index windows), its filters, and a
dialogue's page, a transcript on which an operator takes the dialogue over from the bot,
gives it back, and writes to the customer through the same services as the API
(`dialogues.services_operators`). The history is read-only: it is what happened."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from core.admin import WindowChangeList, WindowListAdmin, WindowPage
from core.errors import ApplicationError
from dialogues.admin.common import ReadOnlyAdmin, cut_short_note, datetime_display, get_only, object_id_param, post_only
from dialogues.admin.inbox import inbox_context
from dialogues.admin.statuses import awaiting_statuses, reply_hint
from dialogues.models import Dialogue, Message
from dialogues.selectors import dialogue_transcript, message_page
from dialogues.selectors_lists import (
    DialogueFilters,
    dialogue_list_page,
    message_by_pk_in_dialogue,
)
from dialogues.selectors_rows import dialogue_page_details, related_names
from dialogues.services_operators import dialogue_opened, dialogue_pause, dialogue_resume, operator_message_send

HISTORY_PAGE_SIZE = 100
PREVIEW_CHARS = 80
# How far back the "last message" filter looks, by its choices.
ACTIVE_SINCE_DAYS = {"today": 0, "7d": 7, "30d": 30}


class DialogueChangeList(WindowChangeList):
    """Fills each row's last message (a bounded index read per row, see
    `dialogue_page_details`), delivery problems and names (one query each for the page)."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        rows: list[Dialogue] = list(self.result_list)
        last, problems = dialogue_page_details(rows)
        names = related_names(rows)
        for row in rows:
            row.last_message_doc = last.get(row.pk)  # type: ignore[attr-defined]
            row.problem_count = problems.get(row.pk, 0)  # type: ignore[attr-defined]
            row.bot_name = names.get(row.chat_bot_id, str(row.chat_bot_id))  # type: ignore[attr-defined]
            row.channel_name = names.get(row.channel_id, str(row.channel_id))  # type: ignore[attr-defined]
        self.result_list = rows


class PausedFilter(admin.SimpleListFilter):
    title = _("bot state")  # as its column says; "bot" read as a filter by bot
    parameter_name = "paused"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, Any]]:
        return [("yes", _("paused (an operator has taken over)")), ("no", _("answering"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Dialogue]) -> QuerySet[Dialogue]:
        # Read by `dialogue_list_page` (DialogueAdmin.window_page); the list has no actions.
        return queryset


class ProblemsFilter(admin.SimpleListFilter):
    title = _("delivery problems")
    parameter_name = "problems"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, Any]]:
        return [("yes", _("has failed or dead replies"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Dialogue]) -> QuerySet[Dialogue]:
        # Read by `dialogue_list_page` (DialogueAdmin.window_page); the list has no actions.
        return queryset


class ActiveSinceFilter(admin.SimpleListFilter):
    """A lower bound on the last message time: the list's own order, cut where it passes it."""

    title = _("last message")
    parameter_name = "active"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, Any]]:
        return [("today", _("Today")), ("7d", _("Past 7 days")), ("30d", _("Past 30 days"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Dialogue]) -> QuerySet[Dialogue]:
        # Read by `dialogue_list_page` (DialogueAdmin.window_page); the list has no actions.
        return queryset


def active_since(value: str | None, *, now: datetime | None = None) -> datetime | None:
    if value not in ACTIVE_SINCE_DAYS:
        return None
    today = timezone.localtime(now or timezone.now()).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=ACTIVE_SINCE_DAYS[value])


@admin.register(Dialogue)
class DialogueAdmin(WindowListAdmin, ReadOnlyAdmin):
    list_display = (
        "customer_chat_id", "bot_name", "channel_name", "bot_state", "last_message", "message_count", "problems",
    )  # fmt: skip
    list_display_links = ("customer_chat_id",)
    # Read by `dialogue_list_page` (core.admin.WindowListAdmin): most recently active first,
    # the one order an index serves; no join, no count.
    list_filter = (PausedFilter, ProblemsFilter, ActiveSinceFilter, "chat_bot", "channel")
    # Each row reads its last message (`dialogue_page_details`): the page's cost is its rows'.
    list_per_page = 50
    search_fields = ("chat_id",)
    search_help_text = _(
        "The start of a customer chat id or of a message id (case-sensitive), or a dialogue id. "
        "A channel's or a bot's dialogues: use the filters."
    )
    fields = ("id", "chat_bot", "channel", "chat_id", "messages_stored", "created_at", "last_message_at")
    readonly_fields = fields
    # Extends the history page (templates/admin/dialogues/dialogue/change_form.html) with the
    # hand-off: the transcript, its reply box, "Take over" and "Give back to the bot".
    change_form_template = "admin/dialogues/dialogue/handoff_change_form.html"

    class Media:
        css = {"all": ("dialogues/admin_lists.css",)}

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return DialogueChangeList

    def window_page(
        self, request: HttpRequest, changelist: WindowChangeList, *, cursor: str | None, count: int
    ) -> WindowPage:
        paused = request.GET.get(PausedFilter.parameter_name)
        filters = DialogueFilters(
            chat_bot_id=object_id_param(request, "chat_bot__id__exact"),
            channel_id=object_id_param(request, "channel__id__exact"),
            paused={"yes": True, "no": False}.get(paused or ""),
            problems=request.GET.get(ProblemsFilter.parameter_name) == "yes",
            since=active_since(request.GET.get(ActiveSinceFilter.parameter_name)),
            search=changelist.query.strip(),
        )
        page = dialogue_list_page(filters=filters, cursor=cursor, count=count)
        return WindowPage(rows=page.rows, next_cursor=page.next_cursor, note=cut_short_note() if page.cut_short else "")

    @admin.display(description=_("messages"))
    def messages_stored(self, obj: Dialogue) -> str:
        """The messages there are; `message_count` also counts each reply still owed."""
        stored = Message.objects.filter(dialogue=obj).count()
        owed = obj.message_count - stored
        if owed <= 0:
            return str(stored)
        return ngettext(
            "%(stored)d (and %(owed)d reply on its way)", "%(stored)d (and %(owed)d replies on their way)", owed
        ) % {
            "stored": stored,
            "owed": owed,
        }

    @admin.display(description=_("customer chat id"))
    def customer_chat_id(self, obj: Dialogue) -> str:
        return obj.chat_id

    @admin.display(description=_("bot"))
    def bot_name(self, obj: Dialogue) -> str:
        return getattr(obj, "bot_name", None) or obj.chat_bot.name

    @admin.display(description=_("channel"))
    def channel_name(self, obj: Dialogue) -> str:
        return getattr(obj, "channel_name", None) or obj.channel.name

    @admin.display(description=_("last message"))
    def last_message(self, obj: Dialogue) -> str:
        doc = getattr(obj, "last_message_doc", None)
        when = datetime_display(obj.last_message_at)
        if doc is None:
            return format_html('<span class="dialogue-last-time">{}</span>', when)
        text = doc.get("text") or ""
        files = len(doc.get("attachments") or [])
        if files and not text:
            text = ngettext("[%d file]", "[%d files]", files) % files
        role = Message.Role(doc["role"]).label if doc.get("role") in Message.Role.values else ""
        return format_html(
            '<span class="dialogue-last-time">{}</span><br><span class="dialogue-preview" title="{}">'
            '<span class="dialogue-preview-role">{}:</span> {}</span>',
            when, text, role, Truncator(text).chars(PREVIEW_CHARS),
        )  # fmt: skip

    @admin.display(description=_("delivery problems"))
    def problems(self, obj: Dialogue) -> str:
        count = getattr(obj, "problem_count", 0)
        if not count:
            return "—"
        url = reverse("admin:dialogues_delivery_changelist") + f"?dialogue__id__exact={obj.pk}"
        text = ngettext("%d failed reply", "%d failed replies", count) % count
        return format_html('<a class="dialogue-problems" href="{}">{}</a>', url, text)

    @admin.display(description=_("bot state"))
    def bot_state(self, obj: Dialogue) -> str:
        if not obj.is_paused:
            return str(_("answering"))
        ends = obj.pause_ends_at
        if ends is None:
            return str(_("paused until given back"))
        return str(_("paused until %(time)s")) % {"time": datetime_display(ends)}

    # --- Hand-off ------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("<path:object_id>/take-over/", wrap(self.take_over_view), name=f"{prefix}_take_over"),
            path("<path:object_id>/give-back/", wrap(self.give_back_view), name=f"{prefix}_give_back"),
            path("<path:object_id>/reply/", wrap(self.reply_view), name=f"{prefix}_reply"),
            path("<path:object_id>/transcript/", wrap(self.transcript_view), name=f"{prefix}_transcript"),
            *super().get_urls(),
        ]

    def has_operate_permission(self, request: HttpRequest) -> bool:
        """Taking over and writing to customers: staff who may change dialogues (superusers)."""
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")  # type: ignore[union-attr]

    def _operated(self, request: HttpRequest, object_id: str) -> Dialogue:
        if not self.has_operate_permission(request):
            raise PermissionDenied
        return self._dialogue(request, object_id)

    def _dialogue(self, request: HttpRequest, object_id: str) -> Dialogue:
        dialogue = self.get_object(request, object_id)
        if dialogue is None:
            raise Http404("No such dialogue")
        return dialogue

    def _back(self, dialogue: Dialogue) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:dialogues_dialogue_change", args=[dialogue.pk]) + "#transcript")

    @staticmethod
    def _wants_fragment(request: HttpRequest) -> bool:
        return request.headers.get("X-Requested-With") == "fetch"

    def transcript_context(self, request: HttpRequest, dialogue: Dialogue) -> dict[str, Any]:
        pk = dialogue.pk
        transcript = dialogue_transcript(dialogue=dialogue)
        statuses = awaiting_statuses(dialogue=dialogue, messages=transcript)
        for message in transcript:
            message.waiting = statuses.get(message.pk)  # type: ignore[attr-defined]
        return {
            "dialogue": dialogue,
            "transcript": transcript,
            "reply_hint": reply_hint(dialogue),
            "can_operate": self.has_operate_permission(request),
            "take_over_url": reverse("admin:dialogues_dialogue_take_over", args=[pk]),
            "give_back_url": reverse("admin:dialogues_dialogue_give_back", args=[pk]),
            "reply_url": reverse("admin:dialogues_dialogue_reply", args=[pk]),
            "transcript_url": reverse("admin:dialogues_dialogue_transcript", args=[pk]),
        }

    def _fragment(self, request: HttpRequest, dialogue: Dialogue, *, status: int = 200) -> TemplateResponse:
        return TemplateResponse(
            request,
            "admin/dialogues/dialogue/transcript.html",
            self.transcript_context(request, dialogue),
            status=status,
        )

    @post_only
    def take_over_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        dialogue = dialogue_pause(dialogue=self._operated(request, object_id), minutes=None)
        self.message_user(
            request,
            _("You have taken this dialogue over: the bot does not answer it until you give it back."),
            messages.SUCCESS,
        )
        return self._back(dialogue)

    @post_only
    def give_back_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        dialogue = dialogue_resume(dialogue=self._operated(request, object_id))
        self.message_user(request, _("The bot answers this dialogue again."), messages.SUCCESS)
        return self._back(dialogue)

    @post_only
    def reply_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        dialogue = self._operated(request, object_id)
        try:
            operator_message_send(dialogue=dialogue, author=request.user, text=request.POST.get("text", ""))
        except ApplicationError as exc:
            if self._wants_fragment(request):
                return HttpResponse(exc.message, status=exc.status, content_type="text/plain; charset=utf-8")
            self.message_user(request, exc.message, messages.ERROR)
            return self._back(dialogue)
        if self._wants_fragment(request):
            return self._fragment(request, self._dialogue(request, object_id))
        self.message_user(request, _("Your message is on its way to the customer."), messages.SUCCESS)
        return self._back(dialogue)

    @get_only
    def transcript_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The transcript fragment the change page polls for new messages."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        return self._fragment(request, self._dialogue(request, object_id))

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Dialogue], search_term: str) -> Any:
        # Searched by `dialogue_list_page` (`window_page`); the list has no actions.
        return queryset, False

    def render_change_form(
        self, request: HttpRequest, context: dict[str, Any], add: bool = False, change: bool = False,
        form_url: str = "", obj: Dialogue | None = None,
    ) -> HttpResponse:  # fmt: skip
        if obj is not None:
            context.update(self._history_context(request, obj))
            context.update(self.transcript_context(request, obj))
            context.update(inbox_context(request, obj))
            dialogue_opened(dialogue=obj, user=request.user)  # the inbox: read, for its assignee
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _history_context(self, request: HttpRequest, dialogue: Dialogue) -> dict[str, Any]:
        """One page of the history through the API's keyset selector: the latest page by
        default, `?before=<id>` for older, `?after=<id>` for newer. A page costs the same at
        any depth of a long dialogue (no skip over what comes before)."""
        before = self._cursor(request, "before", dialogue)
        after = self._cursor(request, "after", dialogue) if before is None else None
        page = message_page(dialogue=dialogue, before=before, after=after, limit=HISTORY_PAGE_SIZE)
        rows = page.messages
        if after is not None:
            has_older, has_newer = True, page.has_more
        elif before is not None:
            has_older, has_newer = page.has_more, True
        else:
            has_older, has_newer = page.has_more, False
        return {
            # What is stored, not `message_count`, which also counts the replies still owed.
            "history_total": Message.objects.filter(dialogue=dialogue).count(),
            "history": rows,
            "history_older": rows[0].pk if rows and has_older else None,
            "history_newer": rows[-1].pk if rows and has_newer else None,
            "history_is_latest": before is None and after is None,
        }

    @staticmethod
    def _cursor(request: HttpRequest, name: str, dialogue: Dialogue) -> Message | None:
        value = request.GET.get(name)
        if not value:
            return None
        try:
            pk = ObjectId(value)
        except (InvalidId, TypeError):
            return None
        return message_by_pk_in_dialogue(dialogue=dialogue, pk=pk)
