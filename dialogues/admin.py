"""Operators' screens for dialogues and undelivered replies. The history is read-only: it is
what happened; redelivery goes through the same dispatcher as the webhook. On a dialogue's page
an operator takes the dialogue over from the bot, gives it back, and writes to the customer,
through the same services as the API (`dialogues.services_operators`)."""

from __future__ import annotations

import re
import time
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
from django.utils import formats, timezone
from django.utils.decorators import method_decorator
from django.utils.functional import lazy
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_POST
from pymongo.errors import ExecutionTimeout

from channels_app.models import Channel, DeliveryState
from chatbots.models import ChatBot
from core.errors import ApplicationError
from core.mongo import mongo_collection
from dialogues.models import Delivery, Dialogue, Message
from dialogues.selectors import dialogue_transcript, dialogues_by_pause, message_page, pipeline_summary
from dialogues.services_operators import dialogue_pause, dialogue_resume, operator_message_send
from dialogues.store.recovery import reply_redeliver_request

HISTORY_PAGE_SIZE = 100
# Admin views are methods: Django's view decorators applied to them.
post_only = method_decorator(require_POST)
get_only = method_decorator(require_GET)
# A message_id search looks at most this many matches (message ids repeat across dialogues).
MESSAGE_ID_SEARCH_LIMIT = 1000
# Text search in the dialogue list: an escaped, case-insensitive regex over the messages of
# the last TEXT_SEARCH_DAYS (an `_id` range: ObjectIds start with their creation time, and
# `_id` is indexed), stopped by the server after TEXT_SEARCH_BUDGET_MS (`max_time_ms`) and by
# us at TEXT_SEARCH_DIALOGUES dialogues. MongoDB reads only the window's messages; the
# embedded server reads the whole collection for any range (about 2 s per 100,000 messages).
# Past a few hundred thousand messages in the window, use a MongoDB text index or Atlas
# Search (see the README).
TEXT_SEARCH_DAYS = 30
TEXT_SEARCH_BUDGET_MS = 3000
TEXT_SEARCH_DIALOGUES = 1000
PREVIEW_CHARS = 80
# The last message of a dialogue sits at one of the last few positions (`seq`) it handed out:
# a customer message reserves its own and its reply's, and duplicates leave gaps.
PREVIEW_SEQ_WINDOWS = (4, 32)
PROBLEM_STATES = [DeliveryState.FAILED.value, DeliveryState.DEAD.value]


def datetime_display(value: datetime | None) -> str:
    """The one format of the admin (settings' DATETIME_FORMAT, with the time zone)."""
    if value is None:
        return "—"
    return formats.date_format(timezone.localtime(value), "DATETIME_FORMAT")


def dialogue_last_messages(dialogues: list[Dialogue]) -> dict[ObjectId, dict[str, Any]]:
    """The last message of each dialogue of a list page: per row one read of at most a few
    index entries (dialogue equal, `seq` from a few below the dialogue's last), so a page costs
    the same whatever the dialogues' lengths.

    One query per row, on purpose: every batched form tried on the embedded server scans
    (at 100,000 messages, 100 rows: `$in` on dialogue and seq 9 s, `$in` on dialogue alone
    reads every message of the page's dialogues, `$unionWith` 142 s; a top-level `$or` scans
    too), while 100 point reads take 0.06 s. On MongoDB proper one `$in` query would do."""
    found: dict[ObjectId, dict[str, Any]] = {}
    collection = mongo_collection(Message._meta.db_table)
    projection = {"dialogue_id": 1, "seq": 1, "text": 1, "role": 1, "created_at": 1}
    for dialogue in dialogues:
        for window in PREVIEW_SEQ_WINDOWS:
            if not dialogue.last_seq:
                break
            docs = list(
                collection.find(
                    {"dialogue_id": dialogue.pk, "seq": {"$gte": max(dialogue.last_seq - window + 1, 0)}},
                    projection,
                ).limit(window)
            )
            if docs:
                found[dialogue.pk] = max(docs, key=lambda doc: doc.get("seq") or 0)
                break
    return found


def dialogue_problem_counts(dialogue_ids: list[ObjectId]) -> dict[ObjectId, int]:
    """Failed and dead replies per dialogue, for a page of dialogues: one aggregation, on
    the delivery index (only undelivered replies are read, never a dialogue's history)."""
    if not dialogue_ids:
        return {}
    rows = mongo_collection(Message._meta.db_table).aggregate(
        [
            {"$match": {"delivery_state": {"$in": PROBLEM_STATES}, "dialogue_id": {"$in": dialogue_ids}}},
            {"$group": {"_id": "$dialogue_id", "n": {"$sum": 1}}},
        ]
    )
    return {row["_id"]: row["n"] for row in rows}


def dialogues_with_problems() -> list[ObjectId]:
    query = {"delivery_state": {"$in": PROBLEM_STATES}}
    return list(mongo_collection(Message._meta.db_table).distinct("dialogue_id", query))


def dialogue_ids_by_text(term: str, *, now: datetime | None = None) -> tuple[list[ObjectId], bool]:
    """Dialogues whose recent messages contain `term` (case-insensitive, taken literally),
    and whether the search was cut short by its time budget or its cap."""
    since = ObjectId.from_datetime((now or timezone.now()) - timedelta(days=TEXT_SEARCH_DAYS))
    cursor = (
        mongo_collection(Message._meta.db_table)
        .find({"_id": {"$gte": since}, "text": {"$regex": re.escape(term), "$options": "i"}}, {"dialogue_id": 1})
        .max_time_ms(TEXT_SEARCH_BUDGET_MS)
        .batch_size(500)
    )
    found: dict[ObjectId, None] = {}
    deadline = time.monotonic() + TEXT_SEARCH_BUDGET_MS / 1000
    try:
        for doc in cursor:
            found[doc["dialogue_id"]] = None
            if len(found) >= TEXT_SEARCH_DIALOGUES or time.monotonic() > deadline:
                return list(found), True
    except ExecutionTimeout:
        return list(found), True
    finally:
        cursor.close()
    return list(found), False


class DialogueChangeList(ChangeList):
    """Fills each row's last message (a bounded index read per row, see
    `dialogue_last_messages`) and delivery problems (one query for the page)."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        rows: list[Dialogue] = list(self.result_list)
        last = dialogue_last_messages(rows)
        problems = dialogue_problem_counts([row.pk for row in rows])
        names = related_names(rows)
        for row in rows:
            row.last_message_doc = last.get(row.pk)  # type: ignore[attr-defined]
            row.problem_count = problems.get(row.pk, 0)  # type: ignore[attr-defined]
            row.bot_name = names.get(row.chat_bot_id, str(row.chat_bot_id))  # type: ignore[attr-defined]
            row.channel_name = names.get(row.channel_id, str(row.channel_id))  # type: ignore[attr-defined]
        self.result_list = rows


def related_names(rows: list[Any]) -> dict[ObjectId, str]:
    """The bots' and channels' names of a list page, by id (two small reads), instead of a
    join: `list_select_related` makes the ORM `$lookup` over every row before its `$match`."""
    bots = {row.chat_bot_id for row in rows}
    channels = {row.channel_id for row in rows}
    return {
        **dict(ChatBot.objects.filter(pk__in=list(bots)).values_list("pk", "name")),
        **dict(Channel.objects.filter(pk__in=list(channels)).values_list("pk", "name")),
    }


class DeliveryChangeList(ChangeList):
    """The page's channels and dialogues by id, not joined."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        rows: list[Delivery] = list(self.result_list)
        names = related_names(rows)
        chats = dict(
            Dialogue.objects.filter(pk__in=list({row.dialogue_id for row in rows})).values_list("pk", "chat_id")
        )
        for row in rows:
            row.channel_label = names.get(row.channel_id, str(row.channel_id))  # type: ignore[attr-defined]
            row.chat_label = chats.get(row.dialogue_id, str(row.dialogue_id))  # type: ignore[attr-defined]
        self.result_list = rows


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class PausedFilter(admin.SimpleListFilter):
    title = _("bot")
    parameter_name = "paused"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, Any]]:
        return [("yes", _("paused (an operator has taken over)")), ("no", _("answering"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Dialogue]) -> QuerySet[Dialogue]:
        value = self.value()
        if value in ("yes", "no"):
            return dialogues_by_pause(queryset, paused=value == "yes")
        return queryset


class ProblemsFilter(admin.SimpleListFilter):
    title = _("delivery problems")
    parameter_name = "problems"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, Any]]:
        return [("yes", _("has failed or dead replies"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Dialogue]) -> QuerySet[Dialogue]:
        if self.value() == "yes":
            return queryset.filter(pk__in=dialogues_with_problems())
        return queryset


@admin.register(Dialogue)
class DialogueAdmin(ReadOnlyAdmin):
    list_display = (
        "customer_chat_id", "bot_name", "channel_name", "bot_state", "last_message", "message_count", "problems",
    )  # fmt: skip
    list_display_links = ("customer_chat_id",)
    # No join (see `related_names`), and no count of every dialogue on each page.
    list_select_related = False
    show_full_result_count = False
    list_filter = (PausedFilter, ProblemsFilter, ("last_message_at", admin.DateFieldListFilter), "chat_bot", "channel")
    search_fields = ("chat_id",)
    # Lazy, so each request gets its own language.
    search_help_text = lazy(
        lambda: str(
            _(
                "Words from the messages of the last %(days)d days (case-insensitive), an exact chat id, "
                "or the message id of any message in the dialogue."
            )
            % {"days": TEXT_SEARCH_DAYS}
        ),
        str,
    )()
    fields = ("id", "chat_bot", "channel", "chat_id", "message_count", "created_at", "last_message_at")
    readonly_fields = fields
    # Extends the history page (templates/admin/dialogues/dialogue/change_form.html) with the
    # hand-off: the transcript, its reply box, "Take over" and "Give back to the bot".
    change_form_template = "admin/dialogues/dialogue/handoff_change_form.html"

    class Media:
        css = {"all": ("dialogues/admin_lists.css",)}

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return DialogueChangeList

    @admin.display(description=_("customer chat id"), ordering="chat_id")
    def customer_chat_id(self, obj: Dialogue) -> str:
        return obj.chat_id

    @admin.display(description=_("bot"), ordering="chat_bot")
    def bot_name(self, obj: Dialogue) -> str:
        return getattr(obj, "bot_name", None) or obj.chat_bot.name

    @admin.display(description=_("channel"), ordering="channel")
    def channel_name(self, obj: Dialogue) -> str:
        return getattr(obj, "channel_name", None) or obj.channel.name

    @admin.display(description=_("last message"), ordering="last_message_at")
    def last_message(self, obj: Dialogue) -> str:
        doc = getattr(obj, "last_message_doc", None)
        when = datetime_display(obj.last_message_at)
        if doc is None:
            return format_html('<span class="dialogue-last-time">{}</span>', when)
        text = doc.get("text") or ""
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
        return {
            "dialogue": dialogue,
            "transcript": dialogue_transcript(dialogue=dialogue),
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
        term = search_term.strip()
        if not term:
            return queryset, False
        # Ids match exactly (both fields are indexed; ids are pasted, not typed); words match
        # the recent messages' text within a time budget. The dialogues are then found by
        # `_id` alone: a top-level `$or` would make the embedded server scan them all.
        ids: dict[Any, None] = dict.fromkeys(
            Dialogue.objects.filter(chat_id=term).values_list("pk", flat=True)[:MESSAGE_ID_SEARCH_LIMIT]
        )
        ids.update(
            dict.fromkeys(
                Message.objects.filter(message_id=term).values_list("dialogue_id", flat=True)[:MESSAGE_ID_SEARCH_LIMIT]
            )
        )
        by_text, cut_short = dialogue_ids_by_text(term)
        ids.update(dict.fromkeys(by_text))
        if cut_short:
            self.message_user(
                request,
                _("The text search stopped early (its time budget or %(cap)d dialogues): narrow it with the filters.")
                % {"cap": TEXT_SEARCH_DIALOGUES},
                messages.WARNING,
            )
        return queryset.filter(pk__in=list(ids)), False

    def render_change_form(
        self, request: HttpRequest, context: dict[str, Any], add: bool = False, change: bool = False,
        form_url: str = "", obj: Dialogue | None = None,
    ) -> HttpResponse:  # fmt: skip
        if obj is not None:
            context.update(self._history_context(request, obj))
            context.update(self.transcript_context(request, obj))
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
        # By _id alone, then checked: with the dialogue in the filter the embedded server
        # scans the dialogue's messages instead of using the _id index.
        message = Message.objects.filter(pk=pk).first()
        return message if message is not None and message.dialogue_id == dialogue.pk else None


IN_FLIGHT = "in_flight"
OWED = "owed"


class DeliveryStateFilter(admin.SimpleListFilter):
    title = _("delivery state")
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, Any]]:
        return [
            (OWED, _("owed (pending or failed, the worker retries)")),
            (IN_FLIGHT, _("in flight (a worker is posting it now)")),
            (DeliveryState.PENDING.value, DeliveryState.PENDING.label),
            (DeliveryState.FAILED.value, DeliveryState.FAILED.label),
            (DeliveryState.PARKED.value, _("parked (its channel is inactive or gone)")),
            (DeliveryState.DEAD.value, DeliveryState.DEAD.label),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> QuerySet[Delivery]:
        value = self.value()
        if value == OWED:
            return queryset.filter(delivery_state__in=[DeliveryState.PENDING, DeliveryState.FAILED])
        if value == IN_FLIGHT:
            return queryset.filter(
                delivery_state__in=[DeliveryState.PENDING, DeliveryState.FAILED], claimed_until__gt=timezone.now()
            )
        if value:
            return queryset.filter(delivery_state=value)
        return queryset


def truncated(text: str, chars: int) -> str:
    """`text` cut to `chars`, whole in the tooltip."""
    if not text:
        return "—"
    return format_html('<span class="cut" title="{}">{}</span>', text, Truncator(text).chars(chars))


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    # Narrow enough for a 1366 px screen with the sidebar: long text is cut (whole in the
    # tooltip), times wrap (dialogues/admin_lists.css), the state and actions stay in view.
    list_display = (
        "created",
        "delivery_state",
        "channel_name",
        "dialogue_link",
        "text_preview",
        "attempts",
        "last_result",
        "next_attempt",
    )
    # No join (see `DeliveryChangeList`), and no count of every reply on each page.
    list_select_related = False
    show_full_result_count = False
    list_filter = (DeliveryStateFilter, "chat_bot", "channel")
    ordering = ("-created_at",)
    actions = ("redeliver_now",)
    change_list_template = "admin/dialogues/delivery/change_list.html"
    change_form_template = "admin/dialogues/delivery/redeliver_change_form.html"
    fields = (
        "id", "chat_bot", "channel", "dialogue", "message_id", "in_reply_to", "text", "created_at",
        "delivery_state", "delivery_attempts", "last_status_code", "last_error", "next_attempt_at", "delivered_at",
        "llm_backend", "llm_model", "prompt_tokens", "completion_tokens", "llm_latency_ms",
    )  # fmt: skip
    readonly_fields = fields

    class Media:
        css = {"all": ("dialogues/admin_lists.css",)}

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return DeliveryChangeList

    def get_urls(self) -> list[URLPattern]:
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path(
                "<path:object_id>/redeliver/",
                self.admin_site.admin_view(self.redeliver_view),
                name=f"{prefix}_redeliver",
            ),
            *super().get_urls(),
        ]

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        # The dialogue list links a dialogue's failed replies here.
        return lookup == "dialogue__id__exact" or super().lookup_allowed(lookup, value, request)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        extra_context = {**(extra_context or {}), "pipeline": pipeline_summary()}
        return super().changelist_view(request, extra_context)

    def render_change_form(
        self, request: HttpRequest, context: dict[str, Any], add: bool = False, change: bool = False,
        form_url: str = "", obj: Delivery | None = None,
    ) -> HttpResponse:  # fmt: skip
        if obj is not None and self.has_redeliver_permission(request):
            context["redeliver_url"] = reverse("admin:dialogues_delivery_redeliver", args=[obj.pk])
        return super().render_change_form(request, context, add, change, form_url, obj)

    @post_only
    def redeliver_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The change page's "Redeliver now": the list action's service for one reply."""
        if not self.has_redeliver_permission(request):
            raise PermissionDenied
        reply = self.get_object(request, object_id)
        if reply is None:
            raise Http404("No such undelivered reply")
        try:
            ahead = reply_redeliver_request(message=reply)
        except ApplicationError as exc:
            self.message_user(request, exc.message, messages.WARNING)
        else:
            text = str(
                _(
                    "The worker makes one attempt within a second, even if the channel's breaker is open; "
                    "reload this page for its result."
                )
            )
            if ahead:
                text += " " + ngettext(
                    "%d earlier message of its chat, still owed, is attempted first.",
                    "%d earlier messages of its chat, still owed, are attempted first.",
                    ahead,
                ) % ahead  # fmt: skip
            self.message_user(request, text, messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:dialogues_delivery_change", args=[reply.pk]))

    @admin.display(description=_("created"), ordering="created_at")
    def created(self, obj: Delivery) -> str:
        return datetime_display(obj.created_at)

    @admin.display(description=_("channel"), ordering="channel")
    def channel_name(self, obj: Delivery) -> str:
        return truncated(getattr(obj, "channel_label", None) or obj.channel.name, 24)

    @admin.display(description=_("attempts"), ordering="delivery_attempts")
    def attempts(self, obj: Delivery) -> int:
        return obj.delivery_attempts

    @admin.display(description=_("next attempt"), ordering="next_attempt_at")
    def next_attempt(self, obj: Delivery) -> str:
        return datetime_display(obj.next_attempt_at)

    @admin.display(description=_("dialogue"))
    def dialogue_link(self, obj: Delivery) -> str:
        url = reverse("admin:dialogues_dialogue_change", args=[obj.dialogue_id])
        chat_id = getattr(obj, "chat_label", None) or obj.dialogue.chat_id
        return format_html('<a href="{}" class="cut" title="{}">{}</a>', url, chat_id, Truncator(chat_id).chars(16))

    @admin.display(description=_("text"))
    def text_preview(self, obj: Delivery) -> str:
        return truncated(obj.text, 40)

    @admin.display(description=_("last result"))
    def last_result(self, obj: Delivery) -> str:
        status = f"HTTP {obj.last_status_code}" if obj.last_status_code else ""
        full = " · ".join(part for part in (status, obj.last_error) if part)
        return truncated(full, 40)

    def has_redeliver_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")  # type: ignore[union-attr]

    @admin.action(description=_("Redeliver now"), permissions=["redeliver"])
    def redeliver_now(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        """Hands the replies to the worker: nothing here waits on a channel, however many
        rows are selected."""
        ids = list(queryset.values_list("pk", flat=True))
        handed = 0
        for message in Message.objects.filter(pk__in=ids):
            try:
                reply_redeliver_request(message=message)
            except ApplicationError as exc:  # delivered meanwhile
                self.message_user(request, f"{message.message_id}: {exc.message}", messages.WARNING)
                continue
            handed += 1
        if handed:
            text = ngettext(
                "%d reply: the worker makes one attempt within a second, even if its channel's breaker is open; "
                "reload for the result.",
                "%d replies: the worker makes one attempt at each within a second, even if their channel's "
                "breaker is open; reload for the results.",
                handed,
            ) % handed  # fmt: skip
            self.message_user(request, text, messages.SUCCESS)
