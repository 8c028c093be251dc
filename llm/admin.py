"""The bot's admin page, with what only the LLM app knows: "Try this bot" and the last 30 days
of replies, tokens and failures. `chatbots` may not import `llm` (it sits below it), so this
app replaces the bot's ModelAdmin with a subclass of chatbots' own, and every import still
points down.

And the LLM providers' pages: the API key is write-only (never shown, only replaced), and
"Test connection" makes one short call and shows its latency and the server's answer or error."""

from __future__ import annotations

from typing import Any, cast

from bson import ObjectId
from django import forms
from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext_lazy as _

from channels_app.services import validate_channel_url
from chatbots.admin import ChatBotAdmin, ChatBotForm
from chatbots.models import ChatBot
from chatbots.services import chatbot_update
from core.errors import ApplicationError
from core.serializers import is_object_id
from core.validators import validate_no_control_characters
from llm.client import LLMError, LLMReply, llm_reply_generate
from llm.models import API_KEY_MAX_LENGTH, LLMProvider
from llm.pacing import pacing_usage, provider_key, provider_limits
from llm.providers import llm_provider_forget, llm_provider_test
from llm.selectors import chatbot_llm_usage_by_day

TRY_MESSAGE_MAX_LENGTH = 4_000
USAGE_DAYS = 30


class TryBotForm(forms.Form):
    message = forms.CharField(
        label=_("Customer message"),
        max_length=TRY_MESSAGE_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80, "autofocus": True}),
    )


class ChatBotLLMForm(ChatBotForm):
    """The bot's form with its LLM provider, which only this app knows."""

    llm_provider = forms.ChoiceField(
        label=_("LLM provider"),
        required=False,
        help_text=_("The server that answers this bot. Default: the platform's (LLM_BACKEND, OPENAI_*)."),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "llm_provider" in self.fields:
            providers = LLMProvider.objects.order_by("name").values_list("pk", "name")
            field = cast(forms.ChoiceField, self.fields["llm_provider"])
            field.choices = [("", _("The platform's default")), *((str(pk), name) for pk, name in providers)]
            if self.instance.llm_provider_id is not None:
                self.initial.setdefault("llm_provider", str(self.instance.llm_provider_id))

    def clean_llm_provider(self) -> ObjectId | None:
        value = self.cleaned_data.get("llm_provider") or ""
        return ObjectId(value) if value else None


admin.site.unregister(ChatBot)


@admin.register(ChatBot)
class ChatBotLLMAdmin(ChatBotAdmin):
    change_form_template = "admin/chatbots/chatbot/change_form_llm.html"
    form = ChatBotLLMForm

    def get_fieldsets(self, request: HttpRequest, obj: ChatBot | None = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return fieldsets
        # Its own fieldset, just before the LLM settings (where the model is chosen).
        result: list[Any] = []
        for name, options in fieldsets:
            if "llm_model" in options.get("fields", ()):
                result.append((_("LLM provider"), {"fields": ["llm_provider"]}))
            result.append((name, options))
        return result

    def save_model(self, request: HttpRequest, obj: ChatBot, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change and "llm_provider" in form.changed_data:
            chatbot_update(chat_bot=obj, llm_provider_id=form.cleaned_data["llm_provider"])

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        extra = [
            path(
                "<path:object_id>/try/",
                self.admin_site.admin_view(self.try_view),
                name="{}_{}_try".format(*info),
            )
        ]
        return extra + super().get_urls()

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = dict(extra_context or {})
        # A malformed id is the parent's to answer (it redirects with a message).
        if is_object_id(object_id):
            usage = chatbot_llm_usage_by_day(chat_bot_id=ObjectId(object_id), days=USAGE_DAYS)
            extra_context["llm_usage"] = usage
            extra_context["llm_usage_totals"] = {
                "replies": sum(day.replies for day in usage),
                "tokens": sum(day.tokens for day in usage),
                "failures": sum(day.failures for day in usage),
            }
            extra_context["llm_usage_days"] = USAGE_DAYS
            # The chart's scale: its bars are drawn as shares of the busiest day.
            extra_context["llm_usage_peak"] = max([1, *(max(day.replies, day.failures) for day in usage)])
            extra_context["try_url"] = reverse("admin:chatbots_chatbot_try", args=[object_id])
        return super().change_view(request, object_id, form_url, extra_context)

    def try_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The reply the bot gives, with its saved settings, to one customer message. No
        channel, no dialogue: nothing is stored or sent."""
        chat_bot = self.get_object(request, object_id)
        if chat_bot is None:
            return HttpResponseRedirect(reverse("admin:chatbots_chatbot_changelist"))
        # It calls the (possibly paid) LLM: operators who may change the bot only.
        if not self.has_change_permission(request, chat_bot):
            raise PermissionDenied
        reply: LLMReply | None = None
        error: LLMError | None = None
        if request.method == "POST":
            form = TryBotForm(request.POST)
            if form.is_valid():
                try:
                    reply = llm_reply_generate(
                        chat_bot=chat_bot, history=[{"role": "USER", "text": form.cleaned_data["message"]}]
                    )
                except LLMError as exc:
                    error = exc
        else:
            form = TryBotForm()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "object": chat_bot,
            "original": chat_bot,
            "title": _("Try %(name)s") % {"name": chat_bot.name},
            "form": form,
            "reply": reply,
            "error": error,
            "change_url": reverse("admin:chatbots_chatbot_change", args=[chat_bot.pk]),
        }
        return TemplateResponse(request, "admin/chatbots/chatbot/try.html", context)


# --- LLM providers -------------------------------------------------------------------------


class LLMProviderForm(forms.ModelForm):
    # Not the model's field: a form bound to it would put the key in the page. Empty: kept.
    new_api_key = forms.CharField(
        label=_("API key"),
        required=False,
        max_length=API_KEY_MAX_LENGTH,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password", "size": 60}),
        help_text=_("Write-only: never shown. Type a key to replace the current one; leave empty to keep it."),
    )
    remove_api_key = forms.BooleanField(label=_("Remove the API key"), required=False)
    base_url = forms.URLField(
        label=_("base URL"),
        max_length=2048,
        assume_scheme="https",
        help_text=_(
            "The server's OpenAI-compatible API root, e.g. https://api.openai.com/v1 (a private "
            "address is allowed: a self-hosted vLLM or Ollama)."
        ),  # fmt: skip
    )

    class Meta:
        model = LLMProvider
        fields = ("name", "base_url", "max_concurrent", "requests_per_minute", "tokens_per_minute")
        help_texts = {
            "base_url": _(
                "The server's OpenAI-compatible API root, e.g. https://api.openai.com/v1 (a private "
                "address is allowed: a self-hosted vLLM or Ollama)."
            ),  # fmt: skip
            "max_concurrent": _("Blank: no limit."),
            "requests_per_minute": _("Blank: no limit."),
            "tokens_per_minute": _("Blank: no limit."),
        }

    def clean_base_url(self) -> str:
        try:
            return validate_channel_url(self.cleaned_data["base_url"].strip())
        except ApplicationError as exc:
            raise forms.ValidationError(exc.message) from None

    def save(self, commit: bool = True) -> LLMProvider:
        provider: LLMProvider = super().save(commit=False)
        if self.cleaned_data.get("new_api_key"):
            provider.api_key = self.cleaned_data["new_api_key"]
        elif self.cleaned_data.get("remove_api_key"):
            provider.api_key = ""
        if commit:
            provider.save()
        return provider


class TestConnectionForm(forms.Form):
    model = forms.CharField(
        label=_("Model"),
        max_length=200,
        validators=[validate_no_control_characters],
        help_text=_("The model asked for in the test call."),
    )


@admin.register(LLMProvider)
class LLMProviderAdmin(admin.ModelAdmin):
    form = LLMProviderForm
    change_form_template = "admin/llm/llmprovider/change_form.html"
    list_display = ("name", "base_url", "has_api_key", "max_concurrent", "requests_per_minute", "tokens_per_minute")
    search_fields = ("name",)
    readonly_fields = ("bots_using", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "base_url", "new_api_key", "remove_api_key")}),
        (_("Limits"), {"fields": ("max_concurrent", "requests_per_minute", "tokens_per_minute")}),
        (None, {"fields": ("bots_using", "created_at", "updated_at")}),
    )

    @admin.display(description=_("API key set"), boolean=True)
    def has_api_key(self, obj: LLMProvider) -> bool:
        return bool(obj.api_key)

    @admin.display(description=_("bots using it"))
    def bots_using(self, obj: LLMProvider) -> int:
        return ChatBot.objects.filter(llm_provider_id=obj.pk).count() if obj.pk else 0

    def save_model(self, request: HttpRequest, obj: LLMProvider, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        llm_provider_forget(provider_id=obj.pk)

    def has_delete_permission(self, request: HttpRequest, obj: LLMProvider | None = None) -> bool:
        # A provider a bot names stays: its replies would fail rather than fall back silently.
        if obj is not None and ChatBot.objects.filter(llm_provider_id=obj.pk).exists():
            return False
        return super().has_delete_permission(request, obj)

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        extra = [
            path(
                "<path:object_id>/test-connection/",
                self.admin_site.admin_view(self.test_connection_view),
                name="{}_{}_test_connection".format(*info),
            )
        ]
        return extra + super().get_urls()

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = dict(extra_context or {})
        if is_object_id(object_id):
            extra_context["test_url"] = reverse("admin:llm_llmprovider_test_connection", args=[object_id])
            provider = LLMProvider.objects.filter(pk=ObjectId(object_id)).first()
            if provider is not None:
                extra_context["pacing_usage"] = pacing_usage(provider_key(provider))
                extra_context["pacing_limits"] = provider_limits(provider)
        return super().change_view(request, object_id, form_url, extra_context)

    def test_connection_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """One short call to the provider's server, with its key: its latency and answer, or
        the error. Nothing is stored."""
        provider = self.get_object(request, object_id)
        if provider is None:
            return HttpResponseRedirect(reverse("admin:llm_llmprovider_changelist"))
        # It calls the (possibly paid) server: operators who may change the provider only.
        if not self.has_change_permission(request, provider):
            raise PermissionDenied
        reply: LLMReply | None = None
        error: LLMError | None = None
        if request.method == "POST":
            form = TestConnectionForm(request.POST)
            if form.is_valid():
                try:
                    reply = llm_provider_test(provider=provider, model=form.cleaned_data["model"])
                except LLMError as exc:
                    error = exc
        else:
            form = TestConnectionForm(initial={"model": settings.LLM_MODEL})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "object": provider,
            "original": provider,
            "title": _("Test connection to %(name)s") % {"name": provider.name},
            "form": form,
            "reply": reply,
            "error": error,
            "change_url": reverse("admin:llm_llmprovider_change", args=[provider.pk]),
        }
        return TemplateResponse(request, "admin/llm/llmprovider/test_connection.html", context)
