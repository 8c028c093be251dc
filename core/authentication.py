"""`Authorization: Token <key>` for the management API, against hashed keys (`core.api_tokens`).

It answers as DRF's TokenAuthentication did (the same messages, a 401 with
`WWW-Authenticate: Token`), says why a known key is refused (expired or revoked), and what
form it expects when the header has another (a bare key, `Basic ...`).
`Authorization: Bearer <key>` is read the same way, for clients that only speak Bearer."""

from __future__ import annotations

import copy
from typing import Any

from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from core.api_tokens import api_token_by_key, api_token_touch
from core.models import ApiToken

KEYWORDS = (b"token", b"bearer")
TOKEN_EXPIRED = _("Token expired.")
TOKEN_REVOKED = _("Token revoked.")
EXPECTED_FORM = _("Invalid Authorization header: expected “Authorization: Token <key>” (or “Bearer <key>”).")


class ApiTokenAuthentication(BaseAuthentication):
    keyword = "Token"

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        auth = get_authorization_header(request).split()
        if not auth:
            return None  # not ours: the session, or anonymous
        if auth[0].lower() not in KEYWORDS:
            # The header is only ever meant for this API (the session needs none): a bare key or
            # another scheme is a mistake to name, not "credentials were not provided".
            raise exceptions.AuthenticationFailed(EXPECTED_FORM)
        # DRF's own messages (and their translations), as its TokenAuthentication answered.
        if len(auth) == 1:
            raise exceptions.AuthenticationFailed(_("Invalid token header. No credentials provided."))
        if len(auth) > 2:
            raise exceptions.AuthenticationFailed(_("Invalid token header. Token string should not contain spaces."))
        try:
            key = auth[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed(
                _("Invalid token header. Token string should not contain invalid characters.")
            ) from None
        return self.authenticate_credentials(key)

    def authenticate_credentials(self, key: str) -> tuple[Any, ApiToken]:
        token = api_token_by_key(key)
        if token is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        now = timezone.now()
        if token.is_revoked:
            raise exceptions.AuthenticationFailed(TOKEN_REVOKED)
        if token.is_expired(now):
            raise exceptions.AuthenticationFailed(TOKEN_EXPIRED)
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        api_token_touch(token=token, now=now)
        # The token (and its user) may be cached and shared by concurrent requests: each request
        # gets its own user, so that permission caches set on it live as long as the request.
        return copy.copy(token.user), token

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """The schema's `tokenAuth` scheme, under the name DRF's TokenAuthentication had
    (`core.schema.MANAGEMENT_SCHEMES`)."""

    target_class = "core.authentication.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <key>` (or `Bearer <key>`). Make a key with `manage.py drf_create_token "
            "<username>` or in the admin (API tokens); it is shown once.",
        }
