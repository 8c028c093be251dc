"""Operators' screens for bots. Every change goes through `chatbots.services`, the same
functions the API calls. A plaintext secret exists only in the response that shows it: it is
rendered straight into that page (never into a message, session or log, which would store it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.core.validators import MaxLengthValidator
from django.db.models import Count, ForeignObjectRel, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from channels_app.models import Channel
from chatbots.models import ChatBot
from chatbots.serializers import FALLBACK_TEXT_MAX_LENGTH, SYSTEM_PROMPT_MAX_LENGTH
from chatbots.services import chatbot_create, chatbot_delete, chatbot_rotate_secret, chatbot_update
from core.validators import validate_no_control_characters

SECRET_TEMPLATE = "admin/chatbots/chatbot/secret_once.html"  # noqa: S105 (a template name)

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise


class Revealed:
    """A plaintext secret on its way into a template. Its repr hides it: Django's template
    engine logs the whole context (with reprs) at DEBUG level when a variable is missing."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def __str__(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret hidden>"


def secret_once_response(
    request: HttpRequest, model_admin: admin.ModelAdmin, shown: list[tuple[ChatBot, str]], *, title: StrOrPromise
) -> TemplateResponse:
    """The one page a secret is ever shown on. `no-store` keeps it out of the browser cache,
    so the back button cannot bring it back."""
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": title,
        "shown": [(bot, Revealed(secret)) for bot, secret in shown],
        "changelist_url": reverse("admin:chatbots_chatbot_changelist"),
    }
    response = TemplateResponse(request, SECRET_TEMPLATE, context)
    response["Cache-Control"] = "no-store"
    return response


class ChannelInline(admin.TabularInline):
    """The bot's channels, read-only: channels are edited on their own pages."""

    model = Channel
    fields = ("name", "url", "is_active", "last_delivery_state", "last_delivery_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = _("channels of this bot")

    @admin.display(description=_("URL"))
    def url(self, obj: Channel) -> str:
        return obj.settings.url if obj.settings else ""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# The bot's LLM settings (blank: the platform's default), in their own fieldset.
LLM_FIELDS = ("system_prompt", "llm_model", "temperature", "max_output_tokens", "context_messages", "fallback_text")


class ChatBotForm(forms.ModelForm):
    class Meta:
        model = ChatBot
        fields = ("name", *LLM_FIELDS)
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


class ChatBotChangeList(ChangeList):
    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        # One grouped query for the page's bots, instead of a join over every bot (an
        # annotation would group all bots before the page is cut) or one count per row.
        ids = [bot.pk for bot in self.result_list]
        counts = dict(
            Channel.objects.filter(chat_bot_id__in=ids)
            .values("chat_bot_id")
            .annotate(n=Count("id"))
            .values_list("chat_bot_id", "n")
        )
        for bot in self.result_list:
            bot.channel_count = counts.get(bot.pk, 0)


@admin.register(ChatBot)
class ChatBotAdmin(admin.ModelAdmin):
    form = ChatBotForm
    list_display = ("name", "secret_prefix_display", "channel_count", "created_at")
    search_fields = ("name", "secret_prefix")
    readonly_fields = ("id", "secret_prefix_display", "created_at", "updated_at")
    inlines = (ChannelInline,)
    actions = ("rotate_secret",)
    change_form_template = "admin/chatbots/chatbot/change_form.html"

    def get_fieldsets(self, request: HttpRequest, obj: ChatBot | None = None) -> Any:
        # A new bot gets its name only: the next page shows its secret; its LLM settings are
        # edited on its page afterwards.
        if obj is None:
            return [(None, {"fields": ["name"]})]
        return [
            (None, {"fields": ["id", "name", "secret_prefix_display", "created_at", "updated_at"]}),
            (_("LLM"), {"fields": list(LLM_FIELDS)}),
        ]

    def get_inlines(self, request: HttpRequest, obj: ChatBot | None) -> Any:
        return self.inlines if obj is not None else ()

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return ChatBotChangeList

    @admin.display(description=_("secret prefix"), ordering="secret_prefix")
    def secret_prefix_display(self, obj: ChatBot) -> str:
        return f"{obj.secret_prefix}…"

    @admin.display(description=_("channels"))
    def channel_count(self, obj: ChatBot) -> int:
        return getattr(obj, "channel_count", 0)

    # --- writes go through the services ---------------------------------------------

    def save_model(self, request: HttpRequest, obj: ChatBot, form: forms.ModelForm, change: bool) -> None:
        if change:
            # Only what the operator changed: the service writes just those fields.
            llm_settings = {name: form.cleaned_data[name] for name in LLM_FIELDS if name in form.changed_data}
            chatbot_update(chat_bot=obj, name=form.cleaned_data["name"], **llm_settings)
            return
        created, secret = chatbot_create(name=form.cleaned_data["name"])
        # The admin keeps using `obj` (log entry, redirect), so it becomes the created bot.
        for field in ChatBot._meta.concrete_fields:
            setattr(obj, field.attname, getattr(created, field.attname))
        obj._state.adding = False
        obj._state.db = created._state.db
        obj._plain_secret = secret  # type: ignore[attr-defined]

    def response_add(self, request: HttpRequest, obj: ChatBot, post_url_continue: str | None = None) -> HttpResponse:
        secret = getattr(obj, "_plain_secret", None)
        if secret is None or "_popup" in request.POST:
            return super().response_add(request, obj, post_url_continue)
        return secret_once_response(request, self, [(obj, secret)], title=_("Chat bot created"))

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
        shown = [(bot, chatbot_rotate_secret(chat_bot=bot)) for bot in queryset]
        return secret_once_response(request, self, shown, title=_("Secret rotated"))

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        extra = [
            path(
                "<path:object_id>/rotate-secret/",
                self.admin_site.admin_view(self.rotate_secret_view),
                name="{}_{}_rotate_secret".format(*info),
            )
        ]
        return extra + super().get_urls()

    def rotate_secret_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET asks for confirmation (the current secret stops working at once); POST rotates."""
        chat_bot = self.get_object(request, object_id)
        if chat_bot is None:
            return HttpResponseRedirect(reverse("admin:chatbots_chatbot_changelist"))
        if not self.has_change_permission(request, chat_bot):
            raise PermissionDenied
        if request.method == "POST":
            secret = chatbot_rotate_secret(chat_bot=chat_bot)
            self.log_change(request, chat_bot, [{"changed": {"fields": ["secret"]}}])
            return secret_once_response(request, self, [(chat_bot, secret)], title=_("Secret rotated"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "object": chat_bot,
            "title": _("Rotate the secret of this bot?"),
        }
        return TemplateResponse(request, "admin/chatbots/chatbot/rotate_confirm.html", context)
