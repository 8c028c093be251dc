"""The bot's admin page, with what only the LLM app knows: "Try this bot" and the last 30 days
of replies, tokens and failures. `chatbots` may not import `llm` (it sits below it), so this
app replaces the bot's ModelAdmin with a subclass of chatbots' own, and every import still
points down."""

from __future__ import annotations

from typing import Any

from bson import ObjectId
from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext_lazy as _

from chatbots.admin import ChatBotAdmin
from chatbots.models import ChatBot
from core.serializers import is_object_id
from llm.client import LLMError, LLMReply, llm_reply_generate
from llm.selectors import chatbot_llm_usage_by_day

TRY_MESSAGE_MAX_LENGTH = 4_000
USAGE_DAYS = 30


class TryBotForm(forms.Form):
    message = forms.CharField(
        label=_("Customer message"),
        max_length=TRY_MESSAGE_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80, "autofocus": True}),
    )


admin.site.unregister(ChatBot)


@admin.register(ChatBot)
class ChatBotLLMAdmin(ChatBotAdmin):
    change_form_template = "admin/chatbots/chatbot/change_form_llm.html"

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
