"""Operators' screens for dialogues and undelivered replies. Both are read-only: the history
is what happened, and redelivery goes through the same dispatcher as the webhook."""

from __future__ import annotations

from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from channels_app.models import DeliveryState
from core.errors import ApplicationError
from dialogues.models import Delivery, Dialogue, Message
from dialogues.selectors import message_page, pipeline_summary
from dialogues.store import reply_redeliver_request

HISTORY_PAGE_SIZE = 100
# A message_id search looks at most this many matches (message ids repeat across dialogues).
MESSAGE_ID_SEARCH_LIMIT = 1000


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Dialogue)
class DialogueAdmin(ReadOnlyAdmin):
    list_display = ("chat_id", "chat_bot", "channel", "message_count", "last_message_at")
    list_select_related = ("chat_bot", "channel")
    list_filter = ("chat_bot", "channel")
    search_fields = ("chat_id",)
    search_help_text = _("Exact chat_id, or the message_id of any message in the dialogue.")
    fields = ("id", "chat_bot", "channel", "chat_id", "message_count", "created_at", "last_message_at")
    readonly_fields = fields
    change_form_template = "admin/dialogues/dialogue/change_form.html"

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Dialogue], search_term: str) -> Any:
        term = search_term.strip()
        if not term:
            return queryset, False
        # Exact matches only: both fields are indexed, and ids are pasted, not typed.
        dialogue_ids = list(
            Message.objects.filter(message_id=term).values_list("dialogue_id", flat=True)[:MESSAGE_ID_SEARCH_LIMIT]
        )
        return queryset.filter(Q(chat_id=term) | Q(pk__in=dialogue_ids)), False

    def render_change_form(
        self, request: HttpRequest, context: dict[str, Any], add: bool = False, change: bool = False,
        form_url: str = "", obj: Dialogue | None = None,
    ) -> HttpResponse:  # fmt: skip
        if obj is not None:
            context.update(self._history_context(request, obj))
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


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "delivery_state",
        "channel",
        "dialogue_link",
        "text_preview",
        "delivery_attempts",
        "last_result",
        "next_attempt_at",
    )
    list_select_related = ("channel", "dialogue")
    list_filter = (DeliveryStateFilter, "chat_bot", "channel")
    ordering = ("-created_at",)
    actions = ("redeliver_now",)
    change_list_template = "admin/dialogues/delivery/change_list.html"
    fields = (
        "id", "chat_bot", "channel", "dialogue", "message_id", "in_reply_to", "text", "created_at",
        "delivery_state", "delivery_attempts", "last_status_code", "last_error", "next_attempt_at", "delivered_at",
        "llm_backend", "llm_model", "prompt_tokens", "completion_tokens", "llm_latency_ms",
    )  # fmt: skip
    readonly_fields = fields

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        extra_context = {**(extra_context or {}), "pipeline": pipeline_summary()}
        return super().changelist_view(request, extra_context)

    @admin.display(description=_("dialogue"))
    def dialogue_link(self, obj: Delivery) -> str:
        url = reverse("admin:dialogues_dialogue_change", args=[obj.dialogue_id])
        return format_html('<a href="{}">{}</a>', url, obj.dialogue.chat_id)

    @admin.display(description=_("text"))
    def text_preview(self, obj: Delivery) -> str:
        return Truncator(obj.text).chars(60)

    @admin.display(description=_("last result"))
    def last_result(self, obj: Delivery) -> str:
        status = f"HTTP {obj.last_status_code}" if obj.last_status_code else ""
        return " · ".join(part for part in (status, Truncator(obj.last_error).chars(80)) if part) or "—"

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
                "%d reply handed to the worker; it is delivered within seconds (see its state here).",
                "%d replies handed to the worker; they are delivered within seconds (see their states here).",
                handed,
            ) % handed  # fmt: skip
            self.message_user(request, text, messages.SUCCESS)
