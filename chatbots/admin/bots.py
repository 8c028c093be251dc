"""Operators' screens for bots. Every change goes through `chatbots.services`, the same
functions the API calls.

A new or rotated secret is shown once, by POST/redirect/GET: the POST that makes it puts it in
the operator's session under a random one-time key and redirects to a reveal page, whose GET
takes it out of the session. Reloading that page (or going back to it) shows "already shown"
and offers a rotation instead; it can neither create a second bot nor rotate again. The secret
is never put into a message or a log, and lives in the session only between the POST and the
GET that follows it."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR, TO_FIELD_VAR
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.core.validators import MaxLengthValidator
from django.db.models import Count, ForeignObjectRel, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from chatbots.admin.extensions import BOT_COUNTS, BOT_INLINES, _count_column
from chatbots.admin.reveal import REVEAL_SECRET, REVEAL_SIGNING_SECRET, reveal_redirect, reveal_response
from chatbots.models import ChatBot
from chatbots.serializers import FALLBACK_TEXT_MAX_LENGTH, SYSTEM_PROMPT_MAX_LENGTH
from chatbots.services import BOT_SETTINGS as SERVICE_SETTINGS
from chatbots.services import (
    chatbot_create,
    chatbot_delete,
    chatbot_name_check,
    chatbot_rotate_secret,
    chatbot_update,
    chatbot_webhook_signing_secret_rotate,
)
from core.admin import admin_object_adopt
from core.errors import ApplicationError, Conflict
from core.validators import validate_no_control_characters

# The bot's LLM settings (blank: the platform's default), in their own fieldset.
LLM_FIELDS = (
    "system_prompt", "llm_model", "temperature", "max_output_tokens", "context_messages", "fallback_text", "vision",
)  # fmt: skip
# Hand-off to humans: how long the bot stays quiet in a dialogue after a human wrote in it.
PAUSE_FIELDS = (
    "pause_after_employee_minutes",
    "pause_after_operator_reply_minutes",
    "handoff_keywords",
    "handoff_tool",
    "handoff_text",
)
# Every write goes through `chatbot_update`, which takes these.
EDITABLE_PAUSE_FIELDS = tuple(name for name in PAUSE_FIELDS if name in SERVICE_SETTINGS)
# One reply per message, or one per burst of messages.
REPLY_FIELDS = ("reply_policy", "burst_quiet_ms", "burst_max_wait_ms")
SETTINGS_FIELDS = (*LLM_FIELDS, *REPLY_FIELDS, *EDITABLE_PAUSE_FIELDS)
# What the webhook demands of the channels' requests (editable; the secret itself is not).
SECURITY_FIELDS = ("require_signed_webhooks",)


class ChatBotForm(forms.ModelForm):
    class Meta:
        model = ChatBot
        fields = ("name", *SETTINGS_FIELDS, *SECURITY_FIELDS)
        help_texts = {
            "system_prompt": _("Sent first, as the system message. Blank: none."),
            "llm_model": _("Blank: the platform's default model (LLM_MODEL)."),
            "temperature": _("0 to 2. Blank: the LLM server's default."),
            "max_output_tokens": _("The longest reply, in tokens. Blank: the LLM server's default."),
            "context_messages": _(
                "How many of the dialogue's latest messages the LLM sees (1 to 1000). "
                "Blank: the platform's default (LLM_CONTEXT_MESSAGES)."
            ),
            "fallback_text": _(
                "Sent instead of a reply when the LLM keeps failing. Blank: no reply; the message is marked failed."
            ),
        }
        widgets = {
            "system_prompt": forms.Textarea(attrs={"rows": 6, "cols": 80}),
            "fallback_text": forms.Textarea(attrs={"rows": 2, "cols": 80}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The API's limits, so that both ways in accept the same values.
        for name, limit in (("system_prompt", SYSTEM_PROMPT_MAX_LENGTH), ("fallback_text", FALLBACK_TEXT_MAX_LENGTH)):
            if name in self.fields:
                self.fields[name].validators.append(MaxLengthValidator(limit))
                self.fields[name].widget.attrs["maxlength"] = str(limit)
        if "llm_model" in self.fields:
            self.fields["llm_model"].validators.append(validate_no_control_characters)

    def clean_name(self) -> str:
        # The service's rule, checked here so the error shows beside the field.
        name = self.cleaned_data["name"]
        try:
            chatbot_name_check(name=name, chat_bot=self.instance)
        except ApplicationError as exc:
            raise forms.ValidationError(exc.message, code="duplicate_name") from exc
        return name


class ChatBotChangeList(ChangeList):
    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        # Each registered count for the whole page at once, instead of one per row.
        ids = [bot.pk for bot in self.result_list]
        counts = {count.name: count.counter(ids) for count in BOT_COUNTS}
        # Bots that share their name with another (made before names were unique): one more
        # grouped query for the page's names.
        names = {bot.name for bot in self.result_list}
        same_name = dict(
            ChatBot.objects.filter(name__in=names).values("name").annotate(n=Count("id")).values_list("name", "n")
        )
        for bot in self.result_list:
            bot.registered_counts = {name: by_bot.get(bot.pk, 0) for name, by_bot in counts.items()}
            bot.same_name_count = same_name.get(bot.name, 1)


@admin.register(ChatBot)
class ChatBotAdmin(admin.ModelAdmin):
    form = ChatBotForm
    list_display = ("name_display", "secret_prefix_display", "created_at")
    search_fields = ("name", "secret_prefix")
    readonly_fields = (
        "id",
        "secret_prefix_display",
        "previous_secret_display",
        "signing_secret_display",
        "created_at",
        "updated_at",
        *(name for name in PAUSE_FIELDS if name not in EDITABLE_PAUSE_FIELDS),
    )
    actions = ("rotate_secret", "rotate_webhook_signing_secret")
    change_form_template = "admin/chatbots/chatbot/change_form.html"

    def get_fieldsets(self, request: HttpRequest, obj: ChatBot | None = None) -> Any:
        # A new bot gets its name only: the next page shows its secret; its LLM settings are
        # edited on its page afterwards.
        if obj is None:
            return [(None, {"fields": ["name"]})]
        return [
            (
                None,
                {
                    "fields": [
                        "id",
                        "name",
                        "secret_prefix_display",
                        "previous_secret_display",
                        "created_at",
                        "updated_at",
                    ]
                },
            ),
            (_("LLM"), {"fields": list(LLM_FIELDS)}),
            (_("Replies"), {"fields": list(REPLY_FIELDS)}),
            (_("Hand-off to humans"), {"fields": list(PAUSE_FIELDS)}),
            (_("Signed webhooks"), {"fields": [*SECURITY_FIELDS, "signing_secret_display"]}),
        ]

    def get_inlines(self, request: HttpRequest, obj: ChatBot | None) -> Any:
        return (*self.inlines, *BOT_INLINES) if obj is not None else ()

    def get_list_display(self, request: HttpRequest) -> Any:
        *before, last = super().get_list_display(request)
        return (*before, *(_count_column(count) for count in BOT_COUNTS), last)

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return ChatBotChangeList

    @admin.display(description=_("name"), ordering="name")
    def name_display(self, obj: ChatBot) -> str:
        """Names are unique (`ChatBot.name_key`), but bots made before the rule may repeat
        one: renaming them behind the operators' backs would break the channels that pick
        them by name, so they are marked instead, told apart by the secret prefix beside them."""
        count = getattr(obj, "same_name_count", 1)
        if count <= 1:
            return obj.name
        return format_html(
            '{} <span class="duplicate-name" style="color: var(--error-fg, #ba2121)" title="{}">⚠ {}</span>',
            obj.name,
            gettext("%(count)d bots have this name; tell them apart by their secret prefix.") % {"count": count},
            gettext("duplicate name"),
        )

    @admin.display(description=_("secret prefix"), ordering="secret_prefix")
    def secret_prefix_display(self, obj: ChatBot) -> str:
        return f"{obj.secret_prefix}…"

    @admin.display(description=_("previous secret"))
    def previous_secret_display(self, obj: ChatBot) -> str:
        """When the secret replaced by the last rotation (API `overlap_minutes`) stops working."""
        until = obj.previous_secret_until
        if obj.previous_secret_hash is None or until is None or until <= timezone.now():
            return gettext("none (only the current secret works)")
        return gettext("still works until %(until)s") % {"until": formats.localize(timezone.localtime(until))}

    @admin.display(description=_("webhook signing secret"))
    def signing_secret_display(self, obj: ChatBot) -> str:
        """Never the secret: it was shown once, when made (the bot's creation or a rotation)."""
        if not obj.webhook_signing_secret:
            return gettext("none yet: rotate it to make one")
        text = gettext("set (shown once when made; rotate it to see a new one)")
        until = obj.previous_webhook_signing_secret_until
        if obj.previous_webhook_signing_secret and until is not None and until > timezone.now():
            text += "; " + gettext("the previous one is accepted until %(until)s") % {
                "until": formats.localize(timezone.localtime(until))
            }
        return text

    # --- writes go through the services ---------------------------------------------

    def save_model(self, request: HttpRequest, obj: ChatBot, form: forms.ModelForm, change: bool) -> None:
        if change:
            # Only what the operator changed: the service writes just those fields.
            llm_settings = {
                name: form.cleaned_data[name]
                for name in (*SETTINGS_FIELDS, *SECURITY_FIELDS)
                if name in form.changed_data
            }
            chatbot_update(chat_bot=obj, name=form.cleaned_data["name"], **llm_settings)
            return
        created, secret = chatbot_create(name=form.cleaned_data["name"])
        admin_object_adopt(obj, created)
        obj._plain_secret = secret  # type: ignore[attr-defined]

    def response_add(self, request: HttpRequest, obj: ChatBot, post_url_continue: str | None = None) -> HttpResponse:
        secret = getattr(obj, "_plain_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        popup = None
        if IS_POPUP_VAR in request.POST:
            # The channel form's "+": the popup shows the secret first, then selects the bot.
            popup = {IS_POPUP_VAR: "1", TO_FIELD_VAR: request.POST.get(TO_FIELD_VAR, "")}
        msg = gettext("The chat bot “%(name)s” was added.") % {"name": obj.name}
        self.message_user(request, msg, messages.SUCCESS)
        # Both of the new bot's secrets, on the one page either is ever shown on.
        return reveal_redirect(
            request,
            [(obj, secret), (obj, obj.webhook_signing_secret)],
            title=_("Chat bot created"),
            popup=popup,
            kinds=[REVEAL_SECRET, REVEAL_SIGNING_SECRET],
        )

    def delete_model(self, request: HttpRequest, obj: ChatBot) -> None:
        chatbot_delete(chat_bot=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ChatBot]) -> None:
        for chat_bot in queryset:
            chatbot_delete(chat_bot=chat_bot)

    def get_deleted_objects(
        self, objs: Any, request: HttpRequest
    ) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
        """Counts instead of Django's list of every related object: a bot with 10,000
        messages would otherwise load and render each one on the confirmation page. What
        belongs to a bot (channels, dialogues, messages) is read off the model's reverse
        relations, so this app names none of the apps above it."""
        bots = list(objs)
        ids = [bot.pk for bot in bots]
        model_count = {str(ChatBot._meta.verbose_name_plural): len(bots)}
        perms_needed: set[str] = set()
        relations = [
            field for field in ChatBot._meta.get_fields(include_hidden=True) if isinstance(field, ForeignObjectRel)
        ]
        for relation in relations:
            model = relation.related_model
            if not isinstance(model, type) or model._meta.proxy:
                continue
            count = model._default_manager.filter(**{f"{relation.field.name}_id__in": ids}).count()
            if not count:
                continue
            model_count[str(model._meta.verbose_name_plural)] = count
            perm = f"{model._meta.app_label}.delete_{model._meta.model_name}"
            if not request.user.has_perm(perm):  # type: ignore[union-attr]
                perms_needed.add(str(model._meta.verbose_name))
        deleted = [
            format_html('{}: <a href="{}">{}</a>', ChatBot._meta.verbose_name, self._change_url(bot), bot.name)
            for bot in bots
        ]
        return deleted, model_count, perms_needed, []

    def _change_url(self, bot: ChatBot) -> str:
        return reverse("admin:chatbots_chatbot_change", args=[bot.pk])

    # --- rotate secret: an action on the list and a button on the change page ------

    @admin.action(description=_("Rotate secret (shows the new one once)"), permissions=["change"])
    def rotate_secret(self, request: HttpRequest, queryset: QuerySet[ChatBot]) -> HttpResponse:
        shown = self._rotate_each(request, queryset, rotate=chatbot_rotate_secret, field="secret")
        return reveal_redirect(request, shown, title=_("Secret rotated"))

    def _rotate_each(
        self, request: HttpRequest, queryset: QuerySet[ChatBot], *, rotate: Any, field: str
    ) -> list[tuple[ChatBot, str]]:
        """Rotates one secret of each bot (`rotate(chat_bot=...)` returns the new one) and
        logs it; a bot rotated by another request at the same moment keeps theirs."""
        shown: list[tuple[ChatBot, str]] = []
        for bot in queryset:
            try:
                shown.append((bot, rotate(chat_bot=bot)))
            except Conflict:
                self.message_user(
                    request,
                    gettext("“%(name)s” was rotated by another request at the same time.") % {"name": bot.name},
                    messages.WARNING,
                )
        for bot, _secret in shown:
            self.log_change(request, bot, [{"changed": {"fields": [field]}}])
        return shown

    @admin.action(
        description=_("Rotate webhook signing secret (shows the new one once; the old one stops at once)"),
        permissions=["change"],
    )
    def rotate_webhook_signing_secret(self, request: HttpRequest, queryset: QuerySet[ChatBot]) -> HttpResponse:
        shown = self._rotate_each(
            request, queryset, rotate=chatbot_webhook_signing_secret_rotate, field="webhook signing secret"
        )
        return reveal_redirect(
            request, shown, title=_("Webhook signing secret rotated"), kinds=[REVEAL_SIGNING_SECRET] * len(shown)
        )

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        extra = [
            path(
                "secret/<str:key>/",
                self.admin_site.admin_view(self.reveal_view),
                name="{}_{}_reveal".format(*info),
            ),
            path(
                "<path:object_id>/rotate-secret/",
                self.admin_site.admin_view(self.rotate_secret_view),
                name="{}_{}_rotate_secret".format(*info),
            ),
        ]
        return extra + super().get_urls()

    def reveal_view(self, request: HttpRequest, key: str) -> HttpResponse:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        return reveal_response(request, self, key)

    def rotate_secret_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET asks for confirmation (the current secret stops working at once); POST rotates."""
        chat_bot = self.get_object(request, object_id)
        if chat_bot is None:
            return HttpResponseRedirect(reverse("admin:chatbots_chatbot_changelist"))
        if not self.has_change_permission(request, chat_bot):
            raise PermissionDenied
        if request.method == "POST":
            try:
                secret = chatbot_rotate_secret(chat_bot=chat_bot)
            except Conflict:
                # Another rotation of this bot won the race; its secret is the one to reveal.
                self.message_user(
                    request, gettext("The secret was rotated by another request at the same time."), messages.ERROR
                )
                return HttpResponseRedirect(reverse("admin:chatbots_chatbot_change", args=[chat_bot.pk]))
            self.log_change(request, chat_bot, [{"changed": {"fields": ["secret"]}}])
            return reveal_redirect(request, [(chat_bot, secret)], title=_("Secret rotated"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "object": chat_bot,
            "title": _("Rotate the secret of this bot?"),
        }
        return TemplateResponse(request, "admin/chatbots/chatbot/rotate_confirm.html", context)
