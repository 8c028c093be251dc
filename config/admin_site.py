from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, cast

from django.contrib.admin import AdminSite
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from core.preferences import user_language_activate
from dialogues.selectors_dashboard import COUNT_CAP, Dashboard, HourActivity, dashboard_summary

# The activity chart, drawn on the server as SVG: no script, no library, no CDN.
CHART_WIDTH = 960
CHART_HEIGHT = 240
CHART_LEFT = 44  # room for the value axis
CHART_TOP = 12
CHART_BOTTOM = 28  # room for the hour labels
SERIES = (
    ("messages_in", _("Messages in"), "#417690"),
    ("delivered", _("Replies delivered"), "#5b9a68"),
    ("failures", _("Failures"), "#ba2121"),
)


@dataclass(frozen=True)
class Bar:
    series: str
    hour: str
    value: int
    x: float
    y: float
    width: float
    height: float
    color: str
    title: str


def _axis_top(peak: int) -> int:
    """The smallest of 1, 2, 5 x 10^n at or above `peak` (at least 1), so grid lines fall on
    round numbers."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if factor * step >= peak:
                return factor * step
        step *= 10


def activity_chart(hours: list[HourActivity]) -> dict[str, Any]:
    """Bar geometry for templates/admin/platform/activity_chart.html: per hour (UTC), one
    bar per series, scaled to the busiest hour."""
    plot_width = CHART_WIDTH - CHART_LEFT
    plot_height = CHART_HEIGHT - CHART_TOP - CHART_BOTTOM
    top = _axis_top(max([1, *(max(h.messages_in, h.delivered, h.failures) for h in hours)]))
    slot = plot_width / max(1, len(hours))
    bar_width = slot / (len(SERIES) + 1)
    bars = []
    labels = []
    for index, hour in enumerate(hours):
        label = hour.hour.strftime("%H:00")
        for position, (field, name, color) in enumerate(SERIES):
            value = int(getattr(hour, field))
            height = plot_height * value / top
            bars.append(
                Bar(
                    series=field,
                    hour=hour.hour.strftime("%Y-%m-%dT%H:00Z"),
                    value=value,
                    x=round(CHART_LEFT + index * slot + bar_width * (position + 0.5), 2),
                    y=round(CHART_TOP + plot_height - height, 2),
                    width=round(bar_width, 2),
                    height=round(height, 2),
                    color=color,
                    title=f"{label} UTC · {name}: {value}",
                )
            )
        if index % 3 == 0 or index == len(hours) - 1:
            labels.append({"x": round(CHART_LEFT + (index + 0.5) * slot, 2), "text": label})
    grid = [
        {"y": round(CHART_TOP + plot_height * (1 - fraction), 2), "value": round(top * fraction)}
        for fraction in (0, 0.5, 1)
        if fraction == 0 or top * fraction == int(top * fraction)
    ]
    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "left": CHART_LEFT,
        "right": CHART_WIDTH,
        "baseline": CHART_TOP + plot_height,
        "label_y": CHART_HEIGHT - 8,
        "bars": bars,
        "labels": labels,
        "grid": grid,
        "series": [
            {"field": field, "name": name, "color": color, "total": sum(int(getattr(h, field)) for h in hours)}
            for field, name, color in SERIES
        ],
    }


def capped(count: int) -> str:
    """A count read up to COUNT_CAP: "1000+" once it reaches it."""
    return f"{COUNT_CAP}+" if count >= COUNT_CAP else str(count)


def dashboard_context(dashboard: Dashboard) -> dict[str, Any]:
    backlog = {key: capped(value) for key, value in dashboard.backlog.items()}
    return {
        "dashboard": dashboard,
        "chart": activity_chart(dashboard.hours),
        "backlog_rows": [
            ("awaiting_reply", _("Not generated yet"), backlog["awaiting_reply"], ""),
            ("pending", _("Pending delivery"), backlog["pending"], "pending"),
            ("failed", _("Failing (retried)"), backlog["failed"], "failed"),
            ("parked", _("Parked"), backlog["parked"], "parked"),
            ("dead", _("Dead"), backlog["dead"], "dead"),
            ("llm_failed", _("No reply (LLM failed)"), backlog["llm_failed"], ""),
        ],
        "replies_failing": dashboard.backlog["failed"] + dashboard.backlog["dead"] > 0,
    }


class PlatformAdminSite(AdminSite):
    site_header = _("Chat-bot platform")
    site_title = _("Chat-bot platform admin")
    index_title = _("Operations")
    # The app has no public site to link to: "/" is the API's JSON 404.
    site_url = None

    def get_urls(self) -> list[Any]:
        from dialogues.admin.inbox import inbox_urls

        return [*inbox_urls(self.admin_view, self.each_context), *super().get_urls()]

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[dict[str, Any]]:
        apps = super().get_app_list(request, app_label)
        if app_label is not None or not request.user.has_perm("dialogues.view_dialogue"):  # type: ignore[union-attr]
            return apps
        # The operators' home: the first item of the navigation.
        inbox = {
            "name": _("Inbox"),
            "app_label": "inbox",
            "app_url": reverse("admin:inbox"),
            "has_module_perms": True,
            "models": [
                {
                    "name": _("Conversations that need a human"),
                    "object_name": "Inbox",
                    "admin_url": reverse("admin:inbox"),
                    "add_url": None,
                    "view_only": True,
                    "perms": {"view": True},
                }
            ],
        }
        return [inbox, *apps]

    def admin_view[V: Callable[..., HttpResponseBase]](self, view: V, cacheable: bool = False) -> V:
        """Every admin page in its user's own language (core.preferences), applied inside the
        view: reading the session then falls under the page's read budget and answers a slow
        or absent database as every other read of the page does."""
        inner = super().admin_view(view, cacheable)

        @wraps(inner)
        def in_users_language(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            user_language_activate(request)
            return inner(request, *args, **kwargs)

        return cast(V, in_users_language)

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        """The usual app list, under the platform's health at a glance (dialogues.selectors_dashboard,
        cached ADMIN_DASHBOARD_CACHE_S, so the page stays fast however often it is loaded)."""
        context = {**dashboard_context(dashboard_summary()), **(extra_context or {})}
        return super().index(request, context)
