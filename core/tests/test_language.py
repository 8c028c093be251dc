"""The admin's language switch: Django's set_language, remembered on the user, so that it
follows them to their next sign-in (another browser, no cookie)."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from core.models import UserPreference

pytestmark = pytest.mark.django_db

PASSWORD = "operator-pass-123"  # noqa: S105 - the staff_user fixture's


def test_the_header_offers_every_language(client: Client, staff_user: Any) -> None:
    client.force_login(staff_user)
    page = client.get("/admin/").content.decode()
    assert '<form id="language-switch" action="/i18n/setlang/" method="post">' in page
    assert '<option value="en" selected>English</option>' in page
    assert '<option value="ru">Русский</option>' in page


def test_the_choice_follows_the_user_to_their_next_sign_in(staff_user: Any) -> None:
    browser = Client()
    browser.login(username=staff_user.username, password=PASSWORD)
    response = browser.post("/i18n/setlang/", {"language": "ru", "next": "/admin/"})
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "ru"
    assert UserPreference.objects.get(user=staff_user).language == "ru"
    assert 'lang="ru"' in browser.get("/admin/").content.decode()

    # Another browser: no language cookie, an English Accept-Language.
    other = Client()
    assert 'lang="en"' in other.get("/admin/login/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    other.login(username=staff_user.username, password=PASSWORD)
    page = other.get("/admin/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'lang="ru"' in page
    assert '<option value="ru" selected>Русский</option>' in page

    # Back to English, from there.
    other.post("/i18n/setlang/", {"language": "en", "next": "/admin/"})
    assert UserPreference.objects.get(user=staff_user).language == "en"
    assert 'lang="en"' in other.get("/admin/", HTTP_ACCEPT_LANGUAGE="ru").content.decode()


def test_a_language_not_offered_changes_nothing(client: Client, staff_user: Any) -> None:
    client.force_login(staff_user)
    response = client.post("/i18n/setlang/", {"language": "xx", "next": "/admin/"})
    assert response.status_code == 302
    assert not UserPreference.objects.filter(user=staff_user).exists()
    assert client.get("/i18n/setlang/").status_code == 405


def test_anonymous_gets_the_cookie_only(client: Client) -> None:
    response = client.post("/i18n/setlang/", {"language": "ru", "next": "/admin/login/"})
    assert response.status_code == 302
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "ru"
    assert 'lang="ru"' in client.get("/admin/login/").content.decode()
    assert not UserPreference.objects.exists()


def test_a_second_operator_in_the_same_browser_gets_their_own_language(staff_user: Any, django_user_model: Any) -> None:
    # One browser, two operators in turn: the second gets their own language, not the first's.
    other = django_user_model.objects.create_user("second", password=PASSWORD, is_staff=True, is_superuser=True)
    UserPreference.objects.create(user=other, language="en")
    browser = Client()
    browser.login(username=staff_user.username, password=PASSWORD)
    browser.post("/i18n/setlang/", {"language": "ru", "next": "/admin/"})
    browser.post("/admin/logout/")
    browser.login(username="second", password=PASSWORD)
    assert 'lang="en"' in browser.get("/admin/").content.decode()
