"""API tokens for the management API: made, looked up, touched and revoked here, by the
command (`drf_create_token`), the admin and the authentication class alike.

A key is shown once, when it is made; only its SHA-256 is stored (`ApiToken.key_hash`, a
unique index, so a look-up is one indexed find). Look-ups are cached per process for
AUTH_CACHE_TTL_S: a revocation takes effect at once in the process that made it and within
that time in every other."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.utils import timezone

from core.caching import LookupCache
from core.models import ApiToken
from core.tokens import display_prefix, hash_secret

API_TOKEN_PREFIX = "cba_"  # noqa: S105 - a public marker that makes leaked keys recognisable to scanners
# `last_used_at` is written at most this often per token: a request does not cost a write.
LAST_USED_RESOLUTION_S = 300

# key hash -> ApiToken (with its user), or nothing: unknown keys are looked up every time.
_by_hash = LookupCache()


def generate_api_token_key() -> str:
    # 256 bits of randomness.
    return API_TOKEN_PREFIX + secrets.token_urlsafe(32)


def api_token_create(
    *, user: Any, name: str = "", expires_at: datetime | None = None, key: str | None = None
) -> tuple[ApiToken, str]:
    """Makes a token for `user`. Returns it with its key in plaintext: the only time the key
    exists. `key` is for carrying over an existing key (the migration of DRF's tokens). No
    check of who asks: for the command line and migrations; requests go through
    `api_token_create_by`."""
    key = key or generate_api_token_key()
    token = ApiToken.objects.create(
        user=user, name=name, key_hash=hash_secret(key), prefix=display_prefix(key), expires_at=expires_at
    )
    return token, key


# Who may make a token for someone else: a key acts as its user, so making one for another
# user is acting as them, which only a user who may already change that user can do.
CHANGE_USER_PERMISSION = "auth.change_user"


def api_token_user_allowed(*, actor: Any, user: Any) -> bool:
    """Whether `actor` may make a token that acts as `user`: themselves; any staff user if a
    superuser; with `auth.change_user`, a staff user who is no superuser and holds no permission
    the actor lacks. Never anyone with more rights than the actor."""
    if not (actor.is_active and actor.is_staff and user.is_active and user.is_staff):
        return False
    if actor.is_superuser or actor.pk == user.pk:
        return True
    if user.is_superuser or not actor.has_perm(CHANGE_USER_PERMISSION):
        return False
    return bool(user.get_all_permissions() <= actor.get_all_permissions())


def api_token_users(*, actor: Any) -> QuerySet[Any]:
    """The users `actor` may make a token for (`api_token_user_allowed`), for a form's choices."""
    user_model: Any = get_user_model()  # the project's User (AbstractBaseUser has no is_staff)
    staff = user_model._default_manager.filter(is_active=True, is_staff=True)
    if actor.is_superuser:
        return staff
    if not actor.has_perm(CHANGE_USER_PERMISSION):
        return staff.filter(pk=actor.pk)
    allowed = [user.pk for user in staff.filter(is_superuser=False) if api_token_user_allowed(actor=actor, user=user)]
    return staff.filter(pk__in=[actor.pk, *allowed])


def api_token_create_by(
    *, actor: Any, user: Any, name: str = "", expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """`api_token_create` on behalf of `actor` (the admin, any endpoint that makes tokens):
    refused with PermissionDenied unless `api_token_user_allowed`."""
    if not api_token_user_allowed(actor=actor, user=user):
        raise PermissionDenied("You may not make an API token for this user.")
    return api_token_create(user=user, name=name, expires_at=expires_at)


def api_token_by_key(key: str) -> ApiToken | None:
    """The token whose key this is (revoked and expired ones too: the caller says why it is
    refused), with its user; None for an unknown key."""
    key_hash = hash_secret(key)

    def load() -> ApiToken | None:
        return ApiToken.objects.select_related("user").filter(key_hash=key_hash).first()

    token: ApiToken | None = _by_hash.get_or_load(key_hash, load)
    return token


def api_token_touch(*, token: ApiToken, now: datetime | None = None) -> None:
    """Records that the token was used, at most every LAST_USED_RESOLUTION_S: one conditional
    update, so concurrent requests write once between them."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=LAST_USED_RESOLUTION_S)
    if token.last_used_at is not None and token.last_used_at > stale:
        return
    ApiToken.objects.filter(Q(last_used_at__isnull=True) | Q(last_used_at__lte=stale), pk=token.pk).update(
        last_used_at=now
    )
    # The cached copy too, so this process does not try again until the next resolution.
    token.last_used_at = now


def api_tokens_revoke(*, tokens: Iterable[ApiToken], now: datetime | None = None) -> int:
    """Revokes the tokens not revoked yet; returns how many it revoked. One update per token,
    conditional on it being still unrevoked, so the first revocation's time stands."""
    now = now or timezone.now()
    revoked = 0
    for token in tokens:
        revoked += ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now)
        _by_hash.discard(token.key_hash)
    return revoked


def api_tokens_revoke_for_user(*, user: Any, now: datetime | None = None) -> int:
    return api_tokens_revoke(tokens=ApiToken.objects.filter(user=user, revoked_at__isnull=True), now=now)
