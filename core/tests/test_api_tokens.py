"""API tokens: hashed at rest, optionally expiring, revocable in the admin; the key is shown
once, by `manage.py drf_create_token` or on the admin's reveal page."""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import re
import time
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from core.api_tokens import API_TOKEN_PREFIX, api_token_create, api_token_create_by
from core.caching import lookup_caches_clear
from core.models import ApiToken
from core.tests.factories import api_token_key as api_token_key_for
from core.throttling import ApiRateThrottle

pytestmark = pytest.mark.django_db

GENERATED = re.compile(r"^Generated token (\S+) for user (\S+)$")


@pytest.fixture(autouse=True)
def _fresh_caches() -> Any:
    lookup_caches_clear()
    yield
    lookup_caches_clear()


@pytest.fixture
def admin_client(client: Client, staff_user: Any) -> Client:
    client.force_login(staff_user)
    return client


def _get(key: str, keyword: str = "Token") -> Any:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{keyword} {key}")
    return client.get("/api/chatbots/")


def test_the_stored_document_holds_the_keys_hash_and_never_the_key(staff_user: Any) -> None:
    token, key = api_token_create(user=staff_user, name="CRM")
    assert key.startswith(API_TOKEN_PREFIX) and len(key) > 40
    documents = list(connection.database[ApiToken._meta.db_table].find())
    assert len(documents) == 1
    assert key not in json.dumps(documents, default=str)
    assert documents[0]["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert documents[0]["prefix"] == key[:10] and token.prefix == key[:10]


@pytest.mark.parametrize("keyword", ["Token", "token", "Bearer"])
def test_the_key_authenticates_the_api(staff_user: Any, keyword: str) -> None:
    token, key = api_token_create(user=staff_user)
    response = _get(key, keyword)
    assert response.status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_an_unknown_key_is_401_as_drf_answered(staff_user: Any) -> None:
    api_token_create(user=staff_user)
    response = _get(API_TOKEN_PREFIX + "not-a-real-key")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json()["detail"] == "Invalid token."
    assert APIClient().get("/api/chatbots/").status_code == 401
    malformed = APIClient()
    malformed.credentials(HTTP_AUTHORIZATION="Token two parts")
    assert malformed.get("/api/chatbots/").json()["detail"].startswith("Invalid token header.")


def test_an_expired_token_is_401_expired(staff_user: Any) -> None:
    token, key = api_token_create(user=staff_user, expires_at=timezone.now() + timedelta(seconds=30))
    assert _get(key).status_code == 200
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    lookup_caches_clear()
    response = _get(key)
    assert response.status_code == 401
    assert response.json()["detail"] == "Token expired."
    assert response["WWW-Authenticate"] == "Token"


def test_an_inactive_users_token_is_401(staff_user: Any) -> None:
    _token, key = api_token_create(user=staff_user)
    staff_user.is_active = False
    staff_user.save(update_fields=["is_active"])
    assert _get(key).json()["detail"] == "User inactive or deleted."


def test_revoked_in_the_admin_the_token_stops_at_once(admin_client: Client, staff_user: Any) -> None:
    token, key = api_token_create(user=staff_user, name="CRM")
    other, other_key = api_token_create(user=staff_user, name="ERP")
    assert _get(key).status_code == 200  # now cached in this process
    response = admin_client.post(
        reverse("admin:core_apitoken_changelist"),
        {"action": "revoke", "_selected_action": [str(token.pk)]},
        follow=True,
    )
    assert response.status_code == 200
    assert "1 token revoked" in response.content.decode()
    token.refresh_from_db()
    assert token.revoked_at is not None
    revoked = _get(key)
    assert revoked.status_code == 401
    assert revoked.json()["detail"] == "Token revoked."
    assert _get(other_key).status_code == 200  # only the one selected


def test_revoked_elsewhere_the_token_stops_within_the_cache_ttl(staff_user: Any) -> None:
    token, key = api_token_create(user=staff_user)
    with override_settings(AUTH_CACHE_TTL_S=0.3):
        lookup_caches_clear()
        assert _get(key).status_code == 200
        # Another process revokes it: this one's cached copy lives at most AUTH_CACHE_TTL_S.
        ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
        time.sleep(0.4)
        assert _get(key).status_code == 401
    lookup_caches_clear()


def test_last_used_is_written_at_most_every_few_minutes(staff_user: Any) -> None:
    token, key = api_token_create(user=staff_user)
    with override_settings(AUTH_CACHE_TTL_S=0):
        lookup_caches_clear()
        assert _get(key).status_code == 200
        first = ApiToken.objects.get(pk=token.pk).last_used_at
        assert first is not None
        assert _get(key).status_code == 200
        assert ApiToken.objects.get(pk=token.pk).last_used_at == first
        # Once it is older than the resolution, the next use writes it again.
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=first - timedelta(minutes=10))
        assert _get(key).status_code == 200
        assert ApiToken.objects.get(pk=token.pk).last_used_at > first - timedelta(minutes=10)
    lookup_caches_clear()


def test_the_rate_limit_counts_per_token_id(staff_user: Any) -> None:
    token, key = api_token_create(user=staff_user)
    request = APIClient()
    request.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    response = request.get("/api/chatbots/")
    ident = ApiRateThrottle().ident(response.renderer_context["request"])
    other = ApiRateThrottle().ident(_get(api_token_create(user=staff_user)[1]).renderer_context["request"])
    assert ident.startswith("api-token:") and ident != other
    assert key not in ident and str(token.pk) not in ident


# --- manage.py drf_create_token --------------------------------------------------------


def _create_token(*args: str) -> str:
    out = StringIO()
    call_command("drf_create_token", *args, stdout=out)
    return out.getvalue()


def test_the_command_prints_a_working_key_once(staff_user: Any) -> None:
    output = _create_token("operator")
    lines = output.strip().splitlines()
    assert len(lines) == 1
    match = GENERATED.match(lines[0])
    assert match is not None and match.group(2) == "operator"
    key = match.group(1)
    assert output.count(key) == 1
    token = ApiToken.objects.get()
    assert token.user == staff_user and token.expires_at is None and token.key_hash != key
    assert _get(key).status_code == 200


def test_the_command_sets_an_expiry_and_resets(staff_user: Any) -> None:
    first = GENERATED.match(_create_token("operator").strip())
    assert first is not None
    second = GENERATED.match(_create_token("operator", "--expires-in-days", "7").strip())
    assert second is not None
    newest = ApiToken.objects.order_by("-created_at").first()
    assert newest is not None and newest.expires_at is not None
    assert abs((newest.expires_at - timezone.now()) - timedelta(days=7)) < timedelta(minutes=1)
    assert _get(first.group(1)).status_code == 200  # without --reset, the old key keeps working

    third = GENERATED.match(_create_token("operator", "-r").strip())
    assert third is not None
    assert _get(first.group(1)).status_code == 401
    assert _get(second.group(1)).status_code == 401
    assert _get(third.group(1)).status_code == 200
    assert ApiToken.objects.filter(revoked_at__isnull=True).count() == 1


def test_the_command_refuses_an_unknown_user_and_a_bad_expiry(staff_user: Any) -> None:
    with pytest.raises(CommandError, match="user nobody does not exist"):
        _create_token("nobody")
    for days in ("0", "-3", "soon"):
        with pytest.raises(CommandError, match="expires-in-days"):
            _create_token("operator", "--expires-in-days", days)
    assert not ApiToken.objects.exists()


# --- the admin -------------------------------------------------------------------------


def _add(admin_client: Client, user: Any, **extra: str) -> Any:
    data = {"user": str(user.pk), "name": "CRM", "expires_at_0": "", "expires_at_1": "", **extra}
    return admin_client.post(reverse("admin:core_apitoken_add"), data)


def test_admin_add_shows_the_key_once_and_a_reload_neither_shows_it_nor_makes_another(
    admin_client: Client, staff_user: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    response = _add(admin_client, staff_user)
    assert response.status_code == 302
    reveal_url = response["Location"]
    assert reveal_url.startswith("/admin/core/apitoken/key/")
    token = ApiToken.objects.get()
    assert token.name == "CRM" and token.user == staff_user

    first = admin_client.get(reveal_url)
    assert first.status_code == 200
    assert "no-store" in first["Cache-Control"]
    key = str(first.context["key"])
    assert key.startswith(token.prefix)
    assert first.content.decode().count(key) == 1
    assert _get(key).status_code == 200

    again = admin_client.get(reveal_url)
    assert again.status_code == 200
    assert key not in again.content.decode()
    assert "already shown" in again.content.decode()
    assert ApiToken.objects.count() == 1
    session = admin_client.session
    assert key not in json.dumps({k: session[k] for k in session.keys()})
    assert key not in caplog.text
    # Nor on the list or the token's page.
    for url in (reverse("admin:core_apitoken_changelist"), reverse("admin:core_apitoken_change", args=[token.pk])):
        page = admin_client.get(url).content.decode()
        assert token.prefix in page and key not in page


def test_admin_add_with_an_expiry_and_refuses_one_in_the_past(admin_client: Client, staff_user: Any) -> None:
    past = timezone.now() - timedelta(days=1)
    refused = _add(admin_client, staff_user, expires_at_0=past.strftime("%Y-%m-%d"), expires_at_1="12:00:00")
    assert refused.status_code == 200
    assert "Must be in the future" in refused.content.decode()
    assert not ApiToken.objects.exists()
    future = timezone.now() + timedelta(days=30)
    added = _add(admin_client, staff_user, expires_at_0=future.strftime("%Y-%m-%d"), expires_at_1="12:00:00")
    assert added.status_code == 302
    token = ApiToken.objects.get()
    assert token.expires_at is not None and token.expires_at.date() == future.date()


def test_admin_lists_each_tokens_state_and_renames_without_unrevoking(admin_client: Client, staff_user: Any) -> None:
    active, _ = api_token_create(user=staff_user, name="active one")
    expired, _ = api_token_create(user=staff_user, name="expired one", expires_at=timezone.now() + timedelta(seconds=1))
    ApiToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(days=1))
    revoked, _ = api_token_create(user=staff_user, name="revoked one")
    page = admin_client.get(reverse("admin:core_apitoken_changelist")).content.decode()
    for token in (active, expired, revoked):
        assert f"{token.prefix}…" in page
    only_active = admin_client.get(reverse("admin:core_apitoken_changelist") + "?state=active").content.decode()
    assert active.prefix in only_active and expired.prefix not in only_active

    # The change page was opened before the revocation; saving it keeps the token revoked.
    change_url = reverse("admin:core_apitoken_change", args=[revoked.pk])
    assert admin_client.get(change_url).status_code == 200
    ApiToken.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())
    assert admin_client.post(change_url, {"name": "renamed"}).status_code == 302
    revoked.refresh_from_db()
    assert revoked.name == "renamed" and revoked.revoked_at is not None


# --- DRF's tokens carried over -----------------------------------------------------------


def test_the_migration_hashes_drf_tokens_and_drops_their_plaintext(staff_user: Any) -> None:
    migration = importlib.import_module("core.migrations.0004_api_tokens_from_drf")
    database = connection.database
    drf_key = "0123456789abcdef0123456789abcdef01234567"
    database[migration.DRF_COLLECTION].insert_one(
        {"_id": drf_key, "user_id": staff_user.pk, "created": timezone.now() - timedelta(days=3)}
    )

    class Editor:
        pass

    editor = Editor()
    editor.connection = connection  # type: ignore[attr-defined]
    migration.hash_drf_tokens(django_apps, editor)

    assert migration.DRF_COLLECTION not in database.list_collection_names()
    token = ApiToken.objects.get()
    assert token.user == staff_user and token.prefix == drf_key[:10]
    assert token.created_at < timezone.now() - timedelta(days=2)
    assert _get(drf_key).status_code == 200
    # Run again (the collection gone): nothing happens.
    migration.hash_drf_tokens(django_apps, editor)
    assert ApiToken.objects.count() == 1


# --- who may make a token for whom -------------------------------------------------------


def _staff(django_user_model: Any, name: str, *codenames: str, superuser: bool = False) -> Any:
    user = django_user_model.objects.create_user(
        username=name, password="pass-12345-x", is_staff=True, is_superuser=superuser
    )
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return django_user_model.objects.get(pk=user.pk)  # no permission cache


def _choices(client: Client) -> set[str]:
    page = client.get(reverse("admin:core_apitoken_add"))
    assert page.status_code == 200
    return {str(value) for value, _label in page.context["adminform"].form.fields["user"].choices if value}


def test_admin_add_lets_a_token_clerk_make_tokens_only_for_themselves(
    client: Client, staff_user: Any, django_user_model: Any
) -> None:
    """The bug: `add_apitoken` offered every staff user, superusers included, and the key acted
    as the one picked."""
    colleague = _staff(django_user_model, "colleague", "view_chatbot", "add_chatbot")
    clerk = _staff(django_user_model, "clerk", "add_apitoken", "view_apitoken")
    client.force_login(clerk)

    assert _choices(client) == {str(clerk.pk)}
    for other in (staff_user, colleague):  # a forged POST: an invalid choice, nothing made
        refused = _add(client, other)
        assert refused.status_code == 200
        assert "user" in refused.context["adminform"].form.errors
    assert not ApiToken.objects.exists()

    added = _add(client, clerk)
    assert added.status_code == 302
    token = ApiToken.objects.get()
    assert token.user == clerk
    key = str(client.get(added["Location"]).context["key"])
    # The key acts as the clerk, who may not read bots, not as a superuser who may.
    assert _get(key).status_code == 403
    assert _get(api_token_key_for(staff_user)).status_code == 200


def test_with_change_user_a_token_only_for_users_with_no_more_rights(
    client: Client, staff_user: Any, django_user_model: Any
) -> None:
    manager = _staff(django_user_model, "manager", "add_apitoken", "view_apitoken", "change_user", "view_chatbot")
    lesser = _staff(django_user_model, "lesser", "view_chatbot")
    greater = _staff(django_user_model, "greater", "view_chatbot", "delete_chatbot")
    other_superuser = _staff(django_user_model, "root2", superuser=True)
    client.force_login(manager)

    assert _choices(client) == {str(manager.pk), str(lesser.pk)}
    for other in (greater, other_superuser, staff_user):
        assert _add(client, other).status_code == 200
    assert not ApiToken.objects.exists()
    assert _add(client, lesser).status_code == 302
    assert ApiToken.objects.get().user == lesser


def test_a_superuser_may_make_a_token_for_any_staff_user(
    admin_client: Client, staff_user: Any, django_user_model: Any
) -> None:
    colleague = _staff(django_user_model, "colleague", "view_chatbot")
    other_superuser = _staff(django_user_model, "root2", superuser=True)
    assert {str(staff_user.pk), str(colleague.pk), str(other_superuser.pk)} <= _choices(admin_client)
    assert _add(admin_client, other_superuser).status_code == 302
    assert ApiToken.objects.get().user == other_superuser


def test_the_service_refuses_a_token_for_someone_with_more_rights(staff_user: Any, django_user_model: Any) -> None:
    clerk = _staff(django_user_model, "clerk", "add_apitoken", "change_user")
    with pytest.raises(PermissionDenied):
        api_token_create_by(actor=clerk, user=staff_user, name="escalation")
    assert not ApiToken.objects.exists()
    token, _key = api_token_create_by(actor=clerk, user=clerk, name="mine")
    assert token.user == clerk


@pytest.mark.parametrize("header", ["{key}", "Basic {key}", "Key {key}"])
def test_a_key_without_its_scheme_is_told_the_form_expected(
    anon_client: APIClient, staff_user: Any, header: str
) -> None:
    anon_client.credentials(HTTP_AUTHORIZATION=header.format(key=api_token_key_for(staff_user)))
    response = anon_client.get("/api/chatbots/")
    assert response.status_code == 401
    assert response.json() == {
        "detail": "Invalid Authorization header: expected “Authorization: Token <key>” (or “Bearer <key>”)."
    }
    assert response["WWW-Authenticate"] == "Token"


def test_no_authorization_header_still_says_no_credentials(anon_client: APIClient) -> None:
    response = anon_client.get("/api/chatbots/")
    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication credentials were not provided."}
