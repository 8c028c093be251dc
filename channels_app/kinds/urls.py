"""`/api/channels/kinds/<kind>/`: each kind's create endpoint (when it has one) and its own
routes (inbound endpoints, widget files), as its package lists them."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, include, path

from channels_app.kinds import kinds_all
from channels_app.kinds.views import KindChannelCreateView


def _patterns() -> list[URLPattern | URLResolver]:
    patterns: list[URLPattern | URLResolver] = []
    for kind in kinds_all().values():
        if kind.create_serializer() is not None:
            patterns.append(
                path(f"{kind.name}/", KindChannelCreateView.as_view(kind=kind), name=f"channel-kind-{kind.name}")
            )
        routes = kind.urls()
        if routes:
            patterns.append(path(f"{kind.name}/", include(routes)))
    return patterns


urlpatterns = _patterns()
