"""The channel admin's part for kinds: a native kind's channel is added and changed with its
package's form (`ChannelKind.admin_form`), saved through the kinds' services, and registered
with its service after (`ChannelKind.after_save`)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from channels_app.kinds import DEFAULT_KIND, kind_get, kinds_all
from channels_app.kinds.base import ChannelKind
from channels_app.kinds.forms import KindChannelForm
from channels_app.models import Channel
from channels_app.services import channel_create_of_kind, channel_kind_update
from core.admin import admin_object_adopt

DELIVERY_FIELDS = ["last_delivery_state", "last_delivery_at", "breaker", "created_at", "updated_at"]


class KindAdminMixin:
    """For `ChannelAdmin`: the webhook kind keeps the admin's own form and fieldsets."""

    def channel_kind(self, request: HttpRequest, obj: Channel | None) -> ChannelKind:
        if obj is not None:
            return kind_get(obj.kind)
        wanted = request.GET.get("kind") or request.POST.get("_kind") or DEFAULT_KIND
        return kinds_all().get(wanted) or kind_get(DEFAULT_KIND)

    def get_form(self, request: HttpRequest, obj: Channel | None = None, change: bool = False, **kwargs: Any) -> Any:
        kind_form = self.channel_kind(request, obj).admin_form()
        if kind_form is not None:
            kwargs["form"] = kind_form
            kwargs["fields"] = None
        return super().get_form(request, obj, change, **kwargs)  # type: ignore[misc]

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        current = self.channel_kind(request, None).name
        base = reverse("admin:channels_app_channel_add")
        links = [
            {"label": kind.label, "url": f"{base}?kind={name}", "current": name == current}
            for name, kind in kinds_all().items()
        ]
        return super().add_view(request, form_url, {**(extra_context or {}), "kind_links": links})  # type: ignore[misc]

    def kind_fieldsets(self, request: HttpRequest, obj: Channel | None) -> list[Any] | None:
        """A native kind's fieldsets; None for the webhook kind."""
        kind_form = self.channel_kind(request, obj).admin_form()
        if kind_form is None:
            return None
        main = ["name", "chat_bot", "is_active", "typing_events", *kind_form.kind_fields]
        if obj is None:
            return [(None, {"fields": main})]
        return [(None, {"fields": ["id", "kind", *main]}), (_("Delivery"), {"fields": DELIVERY_FIELDS})]

    def kind_save(self, request: HttpRequest, obj: Channel, form: forms.ModelForm, change: bool) -> bool:
        """Saves a native kind's channel through the services; False for the webhook kind."""
        if not isinstance(form, KindChannelForm):
            return False
        data = form.cleaned_data
        kind = self.channel_kind(request, obj if change else None)
        config = form.kind_config(obj if change else None)
        if change:
            channel = channel_kind_update(
                channel=obj,
                name=data["name"],
                is_active=data["is_active"],
                config=config,
                typing_events=data.get("typing_events"),
            )
        else:
            channel = channel_create_of_kind(
                chat_bot=data["chat_bot"],
                name=data["name"],
                kind=kind.name,
                config=config,
                is_active=data["is_active"],
                typing_events=data.get("typing_events", True),
            )
            admin_object_adopt(obj, channel)
        problem = kind.after_save(channel)
        if problem:
            messages.warning(request, problem)
        return True
