"""Admin (and any session) login lockout: failed sign-ins per client address and user name,
counted in MongoDB (`core.ratelimit`), shared by every process and host.

Why not django-axes: its models have integer primary keys and migrations, so it would need a
Mongo AppConfig and hand-written migrations like admin/auth; and its database handler counts
failures with get_or_create + an F() update inside `transaction.atomic` with
`select_for_update`, which on this backend are no-ops, with no unique index to stop two first
failures at the same moment from creating two rows. This counter is one atomic `$inc` on a
uniquely indexed document."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from core.permissions import ModelBackend
from core.ratelimit import Rate, client_address, parse_rate, rate_hit, rate_key, rate_peek


def _login_failure_rate() -> Rate | None:
    return parse_rate(settings.LOGIN_FAILURE_RATE)


def login_failure_key(request: HttpRequest | None, username: str) -> str:
    address = client_address(request) if request is not None else ""
    return rate_key("login-fail", address, username.casefold())


class LockoutModelBackend(ModelBackend):
    """`core.permissions.ModelBackend` that refuses to check a password once this address has
    failed LOGIN_FAILURE_RATE times for this user name in the window: even the right password
    is refused until the window ends. The form shows Django's usual "enter a correct username
    and password", so the lockout tells an attacker nothing more. Locking per address and
    user name keeps an attacker elsewhere from locking the real user out."""

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> Any:
        rate = _login_failure_rate()
        if rate is None or username is None:
            return super().authenticate(request, username=username, password=password, **kwargs)
        key = login_failure_key(request, username)
        if rate_peek(key, rate).count >= rate.limit:
            # Stops `django.contrib.auth.authenticate` here: no other backend is tried, and
            # `user_login_failed` is sent as for a wrong password.
            raise PermissionDenied
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            rate_hit(key, rate)
        return user
