"""What the dialogue and delivery screens share: display helpers and the read-only base."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId
from django.contrib import admin
from django.http import HttpRequest
from django.utils import formats, timezone
from django.utils.decorators import method_decorator
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET, require_POST

# Admin views are methods: Django's view decorators applied to them.
post_only = method_decorator(require_POST)
get_only = method_decorator(require_GET)


def datetime_display(value: datetime | None) -> str:
    """The one format of the admin (settings' DATETIME_FORMAT, with the time zone)."""
    if value is None:
        return "—"
    return formats.date_format(timezone.localtime(value), "DATETIME_FORMAT")


def object_id_param(request: HttpRequest, name: str) -> ObjectId | None:
    value = request.GET.get(name) or ""
    return ObjectId(value) if ObjectId.is_valid(value) else None


def cut_short_note() -> str:
    return str(_("Only the first matches were read: narrow the list with the filters or a longer search."))


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
