"""The operators' Deliveries screen: replies (the bot's or an operator's) not delivered yet,
read newest first in index windows, with "Redeliver now" (the worker makes the attempt)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from channels_app.delivery_texts import delivery_text_display
from channels_app.models import DeliveryState
from core.admin import WindowChangeList, WindowListAdmin, WindowPage
from core.errors import ApplicationError
from dialogues.admin.common import ReadOnlyAdmin, cut_short_note, datetime_display, object_id_param, post_only
from dialogues.admin.statuses import next_attempt_text
from dialogues.models import Delivery
from dialogues.selectors_dashboard import pipeline_summary
from dialogues.selectors_lists import (
    UNDELIVERED_STATES,
    DeliveryFilters,
    delivery_by_pk,
    delivery_list_page,
    messages_by_ids,
)
from dialogues.selectors_rows import channel_breakers, dialogue_chat_ids, related_names
from dialogues.store.recovery import reply_redeliver_request


class DeliveryChangeList(WindowChangeList):
    """The page's channels and dialogues by id, not joined."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        rows: list[Delivery] = list(self.result_list)
        names = related_names(rows)
        chats = dialogue_chat_ids(row.dialogue_id for row in rows)
        breakers = channel_breakers(row.channel_id for row in rows)
        for row in rows:
            row.channel_breaker = breakers.get(row.channel_id)  # type: ignore[attr-defined]
            row.channel_label = names.get(row.channel_id, str(row.channel_id))  # type: ignore[attr-defined]
            row.chat_label = chats.get(row.dialogue_id, str(row.dialogue_id))  # type: ignore[attr-defined]
        self.result_list = rows


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
class DeliveryAdmin(WindowListAdmin, ReadOnlyAdmin):
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
    # Read by `delivery_list_page` (core.admin.WindowListAdmin): newest first, the one order
    # an index serves; no join (see `DeliveryChangeList`), no count.
    list_filter = (DeliveryStateFilter, "chat_bot", "channel")
    list_per_page = 50
    ordering = ("-created_at",)
    search_fields = ("message_id",)
    search_help_text = _("The start of the reply's message id (case-sensitive).")
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

    def window_page(
        self, request: HttpRequest, changelist: WindowChangeList, *, cursor: str | None, count: int
    ) -> WindowPage:
        value = request.GET.get(DeliveryStateFilter.parameter_name) or ""
        owed = (DeliveryState.PENDING.value, DeliveryState.FAILED.value)
        states = owed if value in (OWED, IN_FLIGHT) else (value,) if value in UNDELIVERED_STATES else None
        filters = DeliveryFilters(
            **({"states": states} if states else {}),
            in_flight=value == IN_FLIGHT,
            chat_bot_id=object_id_param(request, "chat_bot__id__exact"),
            channel_id=object_id_param(request, "channel__id__exact"),
            dialogue_id=object_id_param(request, "dialogue__id__exact"),
            search=changelist.query.strip(),
        )
        page = delivery_list_page(filters=filters, cursor=cursor, count=count)
        return WindowPage(rows=page.rows, next_cursor=page.next_cursor, note=cut_short_note() if page.cut_short else "")

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Delivery], search_term: str) -> Any:
        # For actions only (the list searches in `delivery_list_page`): a prefix, not `icontains`.
        term = search_term.strip()
        return (queryset.filter(message_id__startswith=term) if term else queryset), False

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

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Delivery | None:
        return delivery_by_pk(object_id) if from_field is None else super().get_object(request, object_id, from_field)

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

    @admin.display(description=_("created"))
    def created(self, obj: Delivery) -> str:
        return datetime_display(obj.created_at)

    @admin.display(description=_("channel"))
    def channel_name(self, obj: Delivery) -> str:
        return truncated(getattr(obj, "channel_label", None) or obj.channel.name, 24)

    @admin.display(description=_("attempts"))
    def attempts(self, obj: Delivery) -> int:
        return obj.delivery_attempts

    @admin.display(description=_("next attempt"))
    def next_attempt(self, obj: Delivery) -> str:
        return next_attempt_text(obj, breaker=getattr(obj, "channel_breaker", None), in_a_sentence=False)

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
        full = " · ".join(part for part in (status, delivery_text_display(obj.last_error)) if part)
        return truncated(full, 40)

    def has_redeliver_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")  # type: ignore[union-attr]

    @admin.action(description=_("Redeliver now"), permissions=["redeliver"])
    def redeliver_now(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        """Hands the replies to the worker: nothing here waits on a channel, however many
        rows are selected."""
        ids = list(queryset.values_list("pk", flat=True))
        handed = 0
        for message in messages_by_ids(ids):
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
