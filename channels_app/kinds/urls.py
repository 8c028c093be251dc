"""The kinds' routes. `api_patterns` (`/api/channels/kinds/<kind>/`): each kind's create
endpoint (when it has one) and its other operators' routes. `channel_patterns`
(`/channels/<kind>/`): what the channels' side calls (inbound endpoints, widgets), served like
the webhook."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, include, path

from channels_app.kinds import kinds_all
from channels_app.kinds.views import kind_create_view


def _api_patterns() -> list[URLPattern | URLResolver]:
    patterns: list[URLPattern | URLResolver] = []
    for kind in kinds_all().values():
        if kind.create_serializer() is not None:
            patterns.append(path(f"{kind.name}/", kind_create_view(kind), name=f"channel-kind-{kind.name}"))
        routes = kind.api_urls()
        if routes:
            patterns.append(path(f"{kind.name}/", include(routes)))
    return patterns


def _channel_patterns() -> list[URLPattern | URLResolver]:
    return [path(f"{kind.name}/", include(kind.urls())) for kind in kinds_all().values() if kind.urls()]


api_patterns = _api_patterns()
channel_patterns = _channel_patterns()
