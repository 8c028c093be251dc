"""The operators' inbox (`/admin/inbox/`): the dialogues that need a human, live. The page
draws itself from `inbox/data` (JSON), which it asks for every INBOX_POLL_MS; that answer comes
from the process's shared list (`dialogues.selectors_inbox.inbox_rows`), so open tabs cost the
database nothing more. Assign, resolve and notes are POSTs from the dialogue's page."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from chatbots.selectors import canned_replies_of
from core.errors import ApplicationError
from dialogues.models import Dialogue
from dialogues.selectors_inbox import INBOX_FILTERS, inbox_counts, inbox_filter, inbox_rows
from dialogues.services_operators import dialogue_assign_to, dialogue_resolve, operator_note_add

INBOX_POLL_MS = 2000
VIEW_PERMISSION = "dialogues.view_dialogue"
OPERATE_PERMISSION = "dialogues.change_dialogue"


def reason_labels() -> dict[str, str]:
    return {
        "asked": _("The bot asked for a human"),
        "taken_over": _("Taken over"),
        "no_reply": _("No reply (the LLM failed)"),
        "dead_reply": _("A reply could not be delivered"),
    }


def _viewer(request: HttpRequest) -> None:
    if not request.user.has_perm(VIEW_PERMISSION):  # type: ignore[union-attr]
        raise PermissionDenied


def _operator(request: HttpRequest) -> None:
    if not request.user.has_perm(OPERATE_PERMISSION):  # type: ignore[union-attr]
        raise PermissionDenied


def _which(request: HttpRequest) -> str:
    which = request.GET.get("filter", "all")
    return which if which in INBOX_FILTERS else "all"


def inbox_view(request: HttpRequest, *, admin_context: dict[str, Any]) -> TemplateResponse:
    _viewer(request)
    context = {
        **admin_context,
        "title": _("Inbox"),
        "data_url": reverse("admin:inbox-data"),
        "dialogue_url": reverse("admin:dialogues_dialogue_change", args=["DIALOGUE_ID"]),
        "poll_ms": INBOX_POLL_MS,
        "which": _which(request),
        "reason_labels_json": json.dumps(reason_labels(), ensure_ascii=False),
    }
    return TemplateResponse(request, "admin/dialogues/inbox.html", context)


@require_GET
def inbox_data(request: HttpRequest) -> JsonResponse:
    _viewer(request)
    rows = inbox_rows()
    user_id = getattr(request.user, "pk", None)
    now = timezone.now()
    shown = inbox_filter(rows, which=_which(request), user_id=user_id)
    return JsonResponse(
        {
            "counts": inbox_counts(rows, user_id=user_id),
            "rows": [row.as_json(now=now) for row in shown],
            "me": str(user_id) if user_id is not None else None,
            "at": now.isoformat(),
        }
    )


def _dialogue(object_id: str) -> Dialogue:
    dialogue = Dialogue.objects.filter(pk=object_id).first() if len(object_id) == 24 else None
    if dialogue is None:
        raise Http404("No such dialogue")
    return dialogue


def _back(request: HttpRequest, dialogue: Dialogue) -> HttpResponseRedirect:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return HttpResponseRedirect(target)
    return HttpResponseRedirect(reverse("admin:dialogues_dialogue_change", args=[dialogue.pk]) + "#transcript")


@require_POST
def assign_view(request: HttpRequest, object_id: str) -> HttpResponse:
    _operator(request)
    dialogue = _dialogue(object_id)
    wanted = request.POST.get("user", "me")
    user: Any
    if wanted == "me":
        user = request.user
    elif wanted == "":
        user = None
    else:
        user = _users().filter(pk=wanted, is_staff=True, is_active=True).first()
        if user is None or not user.has_perm(OPERATE_PERMISSION):
            messages.error(request, _("No such operator."))
            return _back(request, dialogue)
    dialogue_assign_to(dialogue=dialogue, user=user)
    if user is None:
        messages.success(request, _("Nobody is assigned to this dialogue now."))
    else:
        messages.success(request, _("Assigned to %(name)s.") % {"name": user.get_username()})
    return _back(request, dialogue)


@require_POST
def resolve_view(request: HttpRequest, object_id: str) -> HttpResponse:
    _operator(request)
    dialogue = dialogue_resolve(dialogue=_dialogue(object_id))
    messages.success(request, _("Resolved: the dialogue has left the inbox and the bot answers it again."))
    return _back(request, dialogue)


@require_POST
def note_view(request: HttpRequest, object_id: str) -> HttpResponse:
    _operator(request)
    dialogue = _dialogue(object_id)
    try:
        operator_note_add(dialogue=dialogue, author=request.user, text=request.POST.get("text", ""))
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return _back(request, dialogue)
    messages.success(request, _("Note added. Only operators see it."))
    return _back(request, dialogue)


def _users() -> Any:
    user_model: Any = get_user_model()  # the project's User (AbstractBaseUser has no is_staff)
    return user_model.objects


def operators_for_assignment() -> list[tuple[str, str]]:
    """(id, username) of the staff who may operate dialogues, for the "assign to" menu."""
    users = _users().filter(is_staff=True, is_active=True).order_by("username")[:200]
    return [(str(user.pk), user.get_username()) for user in users if user.has_perm(OPERATE_PERMISSION)]


def inbox_urls(admin_view: Any, each_context: Any) -> list[URLPattern]:
    """The inbox's routes, for the admin site (`config.admin_site`)."""

    def page(request: HttpRequest) -> HttpResponse:
        return inbox_view(request, admin_context=each_context(request))

    return [
        path("inbox/", admin_view(page), name="inbox"),
        path("inbox/data", admin_view(inbox_data), name="inbox-data"),
        path("inbox/<str:object_id>/assign/", admin_view(assign_view), name="inbox-assign"),
        path("inbox/<str:object_id>/resolve/", admin_view(resolve_view), name="inbox-resolve"),
        path("inbox/<str:object_id>/note/", admin_view(note_view), name="inbox-note"),
    ]


def inbox_context(request: HttpRequest, dialogue: Dialogue) -> dict[str, Any]:
    """What the dialogue's page shows of the inbox: why it needs a human, who handles it, and
    the forms to assign, note and resolve."""
    labels = reason_labels()
    pk = dialogue.pk
    return {
        "inbox": {
            "reasons": [labels.get(code, code) for code in dialogue.attention_reasons or []],
            "needs_human": dialogue.attention_at is not None,
            "handoff_reason": dialogue.handoff_reason or "",
            "assignee_name": dialogue.assignee_name or "",
            "is_mine": dialogue.assignee_id is not None and str(dialogue.assignee_id) == str(request.user.pk),
            "operators": operators_for_assignment() if request.user.has_perm(OPERATE_PERMISSION) else [],  # type: ignore[union-attr]
            "assign_url": reverse("admin:inbox-assign", args=[pk]),
            "resolve_url": reverse("admin:inbox-resolve", args=[pk]),
            "note_url": reverse("admin:inbox-note", args=[pk]),
            "inbox_url": reverse("admin:inbox"),
        },
        "canned_replies": canned_replies_of(dialogue.chat_bot_id),
    }
