"""API requests per token (or per session user), counted in MongoDB (`core.ratelimit`) so the
limit holds across every process and host. Over it, DRF answers 429 with `Retry-After`."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from core.models import ApiToken
from core.ratelimit import Rate, client_address, parse_rate, rate_hit, rate_key


class ApiRateThrottle(BaseThrottle):
    """API_RATE (e.g. `"600/minute"`): per API token when the request carries one, else per
    signed-in user, else per client address (the few views open to anyone)."""

    def __init__(self) -> None:
        self._wait: float | None = None

    def rate(self) -> Rate | None:
        return parse_rate(settings.API_RATE)

    def ident(self, request: Request) -> str:
        auth: Any = request.auth
        if isinstance(auth, ApiToken):
            # The token's id, never its key: the key exists only in the client's hands.
            return rate_key("api-token", str(auth.pk))
        user = request.user
        if user is not None and user.is_authenticated:
            return rate_key("api-user", str(user.pk))
        return rate_key("api-address", client_address(request._request))

    def allow_request(self, request: Request, view: Any) -> bool:
        rate = self.rate()
        if rate is None:
            return True
        usage = rate_hit(self.ident(request), rate)
        if usage.exceeded:
            self._wait = usage.retry_after_s
            return False
        return True

    def wait(self) -> float | None:
        return self._wait
