"""API tokens in the admin: listed by their prefix (the key itself is never stored), revoked by
an action, and added with the key shown once, on a page reached by POST/redirect/GET
(`core.reveal`): reloading it shows "already shown" and makes no second token."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.forms import UserChangeForm
from django.contrib.auth.models import Group, Permission, User
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from core.api_tokens import api_token_create_by, api_token_users, api_tokens_revoke
from core.models import ApiToken
from core.reveal import reveal_put, reveal_take


def admin_object_adopt(obj: Any, created: Any) -> None:
    """A ModelAdmin's `save_model` that creates through a service: the admin keeps using `obj`
    (log entry, redirect, `response_add`), so it becomes the created instance."""
    for field in type(created)._meta.concrete_fields:
        setattr(obj, field.attname, getattr(created, field.attname))
    obj._state.adding = False
    obj._state.db = created._state.db


# --- Lists read as one bounded window ---------------------------------------------------
#
# Django's changelist counts every matching document (its paginator) and lets any column
# sort the whole collection. A list that can grow with the traffic reads instead one page
# through an index, in one fixed order, and links only to the first page and the next one:
# the next page starts where this one ends (`?cursor=`), so any page costs what the first
# does, whatever the collection's size.

CURSOR_VAR = "cursor"


@dataclass(frozen=True)
class WindowPage:
    rows: list[Any]
    next_cursor: str | None  # where the next page starts; None on the last page
    note: str = ""  # shown under the list, e.g. why a search stopped early


class WindowChangeList(ChangeList):
    """A changelist whose rows come from `model_admin.window_page(request, changelist,
    cursor=..., count=...)`. The filters' querysets are still built, for the actions
    ("select all" acts on them), but never counted or listed here."""

    def get_filters_params(self, params: Any = None) -> Any:
        lookup = super().get_filters_params(params)
        lookup.pop(CURSOR_VAR, None)
        return lookup

    def get_query_string(self, new_params: Any = None, remove: Any = None) -> str:
        # A new filter, search or ordering starts from the first page.
        if not (new_params and CURSOR_VAR in new_params):
            remove = [*(remove or []), CURSOR_VAR]
        return super().get_query_string(new_params, remove)

    def get_results(self, request: HttpRequest) -> None:
        cursor = request.GET.get(CURSOR_VAR) or None
        page: WindowPage = self.model_admin.window_page(  # type: ignore[attr-defined]
            request, self, cursor=cursor, count=self.list_per_page
        )
        self.result_list = page.rows
        self.result_count = len(page.rows)
        self.full_result_count = None
        self.show_full_result_count = False
        self.show_admin_actions = True
        self.can_show_all = False
        self.multi_page = False  # Django's page numbers; ours are the links below
        self.paginator = Paginator(page.rows, max(1, self.list_per_page))
        self.window_note = page.note
        self.next_page_url = self.get_query_string({CURSOR_VAR: page.next_cursor}) if page.next_cursor else ""
        self.first_page_url = self.get_query_string(remove=[CURSOR_VAR]) if cursor else ""


class WindowListAdmin(admin.ModelAdmin):
    """A list read through `window_page`: no count (`show_full_result_count`, no facets), no
    join, and only the orderings `window_page` reads off an index (`sortable_by`)."""

    list_select_related = False
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    sortable_by = ()
    change_list_template = "admin/core/window_change_list.html"

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return WindowChangeList

    def window_page(
        self, request: HttpRequest, changelist: WindowChangeList, *, cursor: str | None, count: int
    ) -> WindowPage:
        raise NotImplementedError


# --- Users and groups: their permission pickers without a join -------------------------
#
# Django's user and group forms list permissions with `select_related("content_type")`, which
# the embedded server answers with an empty content type (docs/internals.md, "Known quirks": the nested
# `$project` of a `$lookup`), so each label raised and the pages answered 500. The content
# types are read by id instead, from ContentType's own per-process cache.


def permission_label(permission: Permission) -> str:
    return f"{ContentType.objects.get_for_id(permission.content_type_id)} | {permission.name}"


def permissions_without_join(field: Any) -> None:
    if field is not None:
        field.queryset = Permission.objects.order_by("content_type_id", "codename")
        field.label_from_instance = permission_label


class PlatformUserChangeForm(UserChangeForm):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        permissions_without_join(self.fields.get("user_permissions"))


class PlatformUserAdmin(UserAdmin):
    form = PlatformUserChangeForm


class PlatformGroupAdmin(GroupAdmin):
    def formfield_for_manytomany(self, db_field: Any, request: Any = None, **kwargs: Any) -> Any:
        field = admin.ModelAdmin.formfield_for_manytomany(self, db_field, request, **kwargs)
        if db_field.name == "permissions":
            permissions_without_join(field)
        return field


for _model, _model_admin in ((User, PlatformUserAdmin), (Group, PlatformGroupAdmin)):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
    admin.site.register(_model, _model_admin)


REVEAL_NAMESPACE = "api-token"
REVEAL_TEMPLATE = "admin/core/apitoken/key_reveal.html"


class ApiTokenAddForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ("user", "name", "expires_at")
        help_texts = {
            "name": _("What the token is for, e.g. the integration that uses it."),
            "expires_at": _("Blank: the token does not expire. It can be revoked at any time."),
        }

    # Set by ApiTokenAdmin.get_form: the signed-in user, whose rights bound the choices.
    actor: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A key acts as its user: the choices are the staff users (the API takes no others,
        # core.permissions) the signed-in user may act as (core.api_tokens), so a forged
        # choice is an invalid one.
        users: Any = self.fields["user"]
        users.queryset = api_token_users(actor=self.actor)
        if users.queryset.count() == 1:
            users.initial = self.actor.pk

    def clean_expires_at(self) -> Any:
        expires_at = self.cleaned_data.get("expires_at")
        if expires_at is not None and expires_at <= timezone.now():
            raise forms.ValidationError(_("Must be in the future."), code="past")
        return expires_at


class StateFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("active", _("active")), ("expired", _("expired")), ("revoked", _("revoked"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> QuerySet[ApiToken]:
        now = timezone.now()
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        if self.value() == "expired":
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        if self.value() == "active":
            return queryset.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now), revoked_at__isnull=True)
        return queryset


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("prefix_display", "name", "user", "created_at", "expires_at", "last_used_at", "state_display")
    list_filter = (StateFilter,)
    search_fields = ("prefix", "name")
    list_select_related = ("user",)
    actions = ("revoke",)
    # Only the name can change: a token's user, key and expiry are what it was made with.
    change_fields = ("name", "user", "prefix_display", "created_at", "expires_at", "last_used_at", "state_display")
    change_readonly_fields = change_fields[1:]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = type("ApiTokenAddForm", (ApiTokenAddForm,), {"actor": request.user})
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> Any:
        return ApiTokenAddForm.Meta.fields if obj is None else self.change_fields

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> Any:
        return () if obj is None else self.change_readonly_fields

    @admin.display(description=_("key prefix"), ordering="prefix")
    def prefix_display(self, obj: ApiToken) -> str:
        return f"{obj.prefix}…"

    @admin.display(description=_("state"))
    def state_display(self, obj: ApiToken) -> str:
        if obj.is_revoked:
            return gettext("revoked")
        if obj.is_expired(timezone.now()):
            return gettext("expired")
        return gettext("active")

    # --- writes go through core.api_tokens --------------------------------------------

    def save_model(self, request: HttpRequest, obj: ApiToken, form: forms.ModelForm, change: bool) -> None:
        if change:
            # The name alone: a full save would write back a revocation or a use read before it.
            obj.save(update_fields=["name"])
            return
        created, key = api_token_create_by(
            actor=request.user,
            user=form.cleaned_data["user"],
            name=form.cleaned_data["name"],
            expires_at=form.cleaned_data["expires_at"],
        )
        admin_object_adopt(obj, created)
        obj._plain_key = key  # type: ignore[attr-defined]

    def response_add(self, request: HttpRequest, obj: ApiToken, post_url_continue: str | None = None) -> HttpResponse:
        key = getattr(obj, "_plain_key", None)
        if key is None:
            return super().response_add(request, obj, post_url_continue)
        self.message_user(request, gettext("The API token “%(token)s” was added.") % {"token": obj}, messages.SUCCESS)
        one_time = reveal_put(request, namespace=REVEAL_NAMESPACE, secrets_=[key], info={"token": str(obj.pk)})
        return HttpResponseRedirect(reverse("admin:core_apitoken_reveal", args=[one_time]))

    @admin.action(description=_("Revoke selected API tokens"), permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        tokens = list(queryset.filter(revoked_at__isnull=True))
        revoked = api_tokens_revoke(tokens=tokens)
        for token in tokens:
            self.log_change(request, token, [{"changed": {"fields": ["revoked"]}}])
        self.message_user(
            request,
            ngettext(
                "%d token revoked: it stops working at once.", "%d tokens revoked: they stop working at once.", revoked
            )
            % revoked,
            messages.SUCCESS,
        )

    # --- the one page a key is ever shown on -------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        extra = [
            path("key/<str:key>/", self.admin_site.admin_view(self.reveal_view), name="core_apitoken_reveal"),
        ]
        return extra + super().get_urls()

    def reveal_view(self, request: HttpRequest, key: str) -> HttpResponse:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        reveal = reveal_take(request, namespace=REVEAL_NAMESPACE, key=key)
        token = None
        if reveal is not None:
            token = ApiToken.objects.select_related("user").filter(pk=reveal.info.get("token")).first()
        shown = reveal.secrets[0] if reveal is not None and reveal.secrets and token is not None else None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": gettext("API token created") if shown else gettext("Key already shown"),
            "token": token,
            "key": shown,
            "changelist_url": reverse("admin:core_apitoken_changelist"),
        }
        response = TemplateResponse(request, REVEAL_TEMPLATE, context)
        # Out of the browser's cache, so the back button cannot bring the key back.
        response["Cache-Control"] = "no-store"
        return response
