"""The one page a new or rotated bot secret is shown on, once (POST/redirect/GET through the
session, `core.reveal`)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from bson import ObjectId
from django.contrib import admin
from django.contrib.admin.options import IS_POPUP_VAR, TO_FIELD_VAR
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext

from chatbots.models import ChatBot
from core.reveal import Revealed, reveal_put, reveal_take

SECRET_TEMPLATE = "admin/chatbots/chatbot/secret_reveal.html"  # noqa: S105 (a template name)
REVEAL_NAMESPACE = "chatbots"

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise


# What a revealed secret is: the bot's secret (channels authenticate with it), or its webhook
# signing secret (channels sign their requests with it).
REVEAL_SECRET = "secret"  # noqa: S105 (a kind, not a secret)
REVEAL_SIGNING_SECRET = "signing"  # noqa: S105 (a kind, not a secret)


def reveal_redirect(
    request: HttpRequest,
    shown: list[tuple[ChatBot, str]],
    *,
    title: StrOrPromise,
    popup: dict[str, str] | None = None,
    kinds: list[str] | None = None,
) -> HttpResponseRedirect:
    """Puts the new secrets in the session under a one-time key and redirects to the page that
    shows them (POST/redirect/GET): reloading that page cannot repeat the POST. `kinds` says
    what each secret is (REVEAL_SECRET by default)."""
    info = {
        "bots": [str(bot.pk) for bot, _secret in shown],
        "kinds": kinds or [REVEAL_SECRET] * len(shown),
        "title": str(title),
    }
    key = reveal_put(request, namespace=REVEAL_NAMESPACE, secrets_=[secret for _bot, secret in shown], info=info)
    url = reverse("admin:chatbots_chatbot_reveal", args=[key])
    return HttpResponseRedirect(f"{url}?{urlencode(popup)}" if popup else url)


def reveal_response(request: HttpRequest, model_admin: admin.ModelAdmin, key: str) -> HttpResponse:
    """The one page a secret is ever shown on, once: the first GET takes the secrets out of
    the session; later ones show "already shown" with a rotation for each bot. `no-store`
    keeps the page out of the browser cache, so the back button cannot bring it back."""
    reveal = reveal_take(request, namespace=REVEAL_NAMESPACE, key=key)
    shown: list[tuple[ChatBot, Revealed]] = []
    bot_ids: list[str] = []
    title: str = gettext("Secret already shown")
    if reveal is not None:
        bot_ids = list(reveal.info.get("bots", []))
        kinds = list(reveal.info.get("kinds") or [REVEAL_SECRET] * len(bot_ids))
        if reveal.secrets:
            bots = _bots_by_id(bot_ids)
            items = zip(bot_ids, reveal.secrets, kinds, strict=True)
            shown = [(bots[bot_id], Revealed(str(secret), kind)) for bot_id, secret, kind in items if bot_id in bots]
            title = reveal.info.get("title") or title
    # One bot's two secrets (its own and its signing secret, on creation) are one bot.
    bot_ids = list(dict.fromkeys(bot_ids))
    bots_by_id = _bots_by_id(bot_ids) if bot_ids and not shown else {}
    is_popup = IS_POPUP_VAR in request.GET
    if is_popup and "done" in request.GET and len(bot_ids) == 1:
        return _popup_done(request, model_admin, bot_ids[0])
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": title,
        "shown": shown,
        "already_shown": [bots_by_id[bot_id] for bot_id in bot_ids if bot_id in bots_by_id],
        "changelist_url": reverse("admin:chatbots_chatbot_changelist"),
        "single_bot": shown[0][0] if shown and len({bot.pk for bot, _secret in shown}) == 1 else None,
        "is_popup": is_popup,
        "popup_done_url": f"{request.path}?{urlencode({**request.GET.dict(), 'done': '1'})}" if is_popup else "",
    }
    response = TemplateResponse(request, SECRET_TEMPLATE, context)
    response["Cache-Control"] = "no-store"
    return response


def _bots_by_id(bot_ids: list[str]) -> dict[str, ChatBot]:
    valid = [ObjectId(bot_id) for bot_id in bot_ids if ObjectId.is_valid(bot_id)]
    return {str(bot.pk): bot for bot in ChatBot.objects.filter(pk__in=valid)}


def _popup_done(request: HttpRequest, model_admin: admin.ModelAdmin, bot_id: str) -> HttpResponse:
    """What Django's own `response_add` answers in a popup (the channel form's "+" next to its
    bot): closes the popup and selects the new bot, once its secret has been seen."""
    bot = _bots_by_id([bot_id]).get(bot_id)
    if bot is None:
        return HttpResponseRedirect(reverse("admin:chatbots_chatbot_changelist"))
    to_field = request.GET.get(TO_FIELD_VAR)
    value = bot.serializable_value(to_field if to_field else bot._meta.pk.attname)
    return TemplateResponse(
        request,
        model_admin.popup_response_template or "admin/popup_response.html",
        {"popup_response_data": json.dumps({"value": str(value), "obj": str(bot)})},
    )
