"""Django's model permissions (view, add, change, delete), for the admin and the API alike."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.contrib.auth import backends
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db.models import Model
from rest_framework.permissions import DjangoModelPermissions

if TYPE_CHECKING:  # rest_framework.views imports this module (DEFAULT_PERMISSION_CLASSES)
    from rest_framework.request import Request
    from rest_framework.views import APIView


class ModelBackend(backends.ModelBackend):
    """Django's ModelBackend, reading each permission's app label without a join.

    Django builds `"<app_label>.<codename>"` with `values_list("content_type__app_label", ...)`,
    which django-mongodb-backend turns into a `$lookup` followed by a nested projection
    (`{"$project": {"django_content_type": {"app_label": 1}}}`), which the embedded server
    answers wrongly (docs/internals.md, "Known quirks"). Reading the content type ids and looking the
    labels up by id is valid on any MongoDB and costs one small query more."""

    def _get_permissions(self, user_obj: Any, obj: Any, from_name: str) -> set[str]:
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        cache_name = f"_{from_name}_perm_cache"
        if not hasattr(user_obj, cache_name):
            if user_obj.is_superuser:
                perms = Permission.objects.all()
            else:
                perms = getattr(self, f"_get_{from_name}_permissions")(user_obj)
            rows = list(perms.values_list("content_type_id", "codename").order_by())
            labels = dict(
                ContentType.objects.filter(pk__in={ct for ct, _ in rows}).values_list("pk", "app_label").order_by()
            )
            setattr(user_obj, cache_name, {f"{labels[ct]}.{name}" for ct, name in rows if ct in labels})
        return set(getattr(user_obj, cache_name))

    async def _aget_permissions(self, user_obj: Any, obj: Any, from_name: str) -> set[str]:
        return await sync_to_async(self._get_permissions)(user_obj, obj, from_name)


_VIEW = "%(app_label)s.view_%(model_name)s"
_CHANGE = "%(app_label)s.change_%(model_name)s"


class StaffModelPermissions(DjangoModelPermissions):
    """The management API: staff users only (as before), each limited by the model permissions
    the admin applies: view to read, add to create, change to update, delete to delete. A POST
    to one object's action (rotate a token or a signing secret, pause a dialogue, write to its
    customer) changes that object, so it needs change, not add."""

    perms_map = {
        "GET": [_VIEW],
        "HEAD": [_VIEW],
        "OPTIONS": [],
        "POST": ["%(app_label)s.add_%(model_name)s"],
        "PUT": [_CHANGE],
        "PATCH": [_CHANGE],
        "DELETE": ["%(app_label)s.delete_%(model_name)s"],
    }

    def has_permission(self, request: Request, view: APIView) -> bool:
        user: Any = request.user  # the User model (AbstractBaseUser has no is_staff, has_perms)
        if not (user and user.is_authenticated and user.is_active and user.is_staff):
            return False
        model: type[Model] = self._queryset(view).model
        method = request.method or ""
        if method == "POST" and getattr(view, "detail", False):
            method = "PATCH"
        return bool(user.has_perms(self.get_required_permissions(method, model)))
