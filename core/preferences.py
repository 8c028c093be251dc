"""An operator's own choices, on the server: the admin's language follows them from one
sign-in to the next, in any browser (`core.views.language_set` writes it; the admin's views
apply it, `user_language_activate`).

The session holds a copy (`SESSION_LANGUAGE`), so that a page costs no read of it: written
when the user chooses, read from the database once per session otherwise."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils import translation

from core.models import UserPreference

SESSION_LANGUAGE = "core.language"


def language_is_offered(language: str) -> bool:
    return language in {code for code, _name in settings.LANGUAGES}


def user_language_set(*, user: Any, language: str) -> None:
    UserPreference.objects.update_or_create(user=user, defaults={"language": language})


def user_language(*, user: Any) -> str:
    """The user's language, or "" when they have not chosen one."""
    language = UserPreference.objects.filter(user=user).values_list("language", flat=True).first() or ""
    return language if language_is_offered(language) else ""


def request_user_language(request: HttpRequest) -> str:
    """The signed-in user's language ("" when none), read once per session."""
    session = request.session
    if SESSION_LANGUAGE not in session:
        session[SESSION_LANGUAGE] = user_language(user=request.user)
    return str(session[SESSION_LANGUAGE])


def user_language_activate(request: HttpRequest) -> None:
    """The signed-in user's language for this request, over the language cookie and
    Accept-Language that LocaleMiddleware read. Called by the admin's views
    (`config.admin_site.PlatformAdminSite.admin_view`), so that reading the session happens
    inside the view, under the request's read budget and its database-error handling."""
    if request.user.is_authenticated:
        language = request_user_language(request)
        if language:
            translation.activate(language)
            request.LANGUAGE_CODE = language
