"""Pieces shared by the management API's views."""

from __future__ import annotations

import math
import re
from typing import Any

from django.http import Http404, QueryDict
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.routers import SimpleRouter
from rest_framework.utils import html

from core.serializers import OBJECT_ID_SCHEMA, is_object_id


def api_router() -> SimpleRouter:
    # The existing clients call `/api/channels/{id}` without the slash; both forms work.
    # SimpleRouter's constructor only knows "/" or "", so the pattern is set afterwards.
    router = SimpleRouter()
    router.trailing_slash = "/?"
    return router


NOT_FOUND_DETAIL = "Not found."


class ObjectIdLookupMixin:
    """Detail routes take any path segment (so a malformed id reaches the view) and answer
    404 to anything that is not an ObjectId, as to an unknown one."""

    lookup_value_regex = "[^/]+"
    kwargs: dict[str, Any]
    lookup_field: str
    lookup_url_kwarg: str | None

    def get_object(self) -> Any:
        value = self.kwargs.get(self.lookup_url_kwarg or self.lookup_field)
        if not is_object_id(value):
            raise NotFound(NOT_FOUND_DETAIL)
        try:
            return super().get_object()  # type: ignore[misc]
        except Http404:
            # One message for malformed and unknown ids alike.
            raise NotFound(NOT_FOUND_DETAIL) from None


def query_params(params: QueryDict) -> dict[str, str]:
    """The query string as a plain dict of single values. DRF serializers treat a QueryDict
    as an HTML form, where a missing boolean reads as False; a dict does not."""
    return {key: str(params[key]) for key in params}


def validated(serializer_class: type[serializers.Serializer], data: Any, **kwargs: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data, **kwargs)
    if html.is_html_input(data):
        serializer.initial_data = form_values(serializer.fields, data, partial=serializer.partial)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


OBJECT_ID_PATH_PARAMETER = OpenApiParameter(
    "id",
    OBJECT_ID_SCHEMA,
    OpenApiParameter.PATH,
    description="The object's id (24 hexadecimal characters). Malformed or unknown ids answer 404.",
)


class ErrorSerializer(serializers.Serializer):
    """`{"detail": "..."}`; validation errors instead name the field: `{"url": ["..."]}`."""

    detail = serializers.CharField()


def _error(description: str, example: dict[str, Any], name: str) -> OpenApiResponse:
    return OpenApiResponse(
        response=ErrorSerializer,
        description=description,
        examples=[OpenApiExample(name, value=example, response_only=True)],
    )


UNAUTHORIZED = _error(
    "No or invalid credentials (`Authorization: Token <key>`, or a staff session).",
    {"detail": "Authentication credentials were not provided."},
    "Unauthenticated",
)
FORBIDDEN = _error(
    "Authenticated, but not a staff user, or without the model permission (view, add, change, delete) "
    "this request needs.",
    {"detail": "You do not have permission to perform this action."},
    "Not staff",
)
CONFLICT = _error(
    "A concurrent change won; repeat the request.",
    {"detail": "The signing secret was rotated at the same time by another request; try again"},
    "Conflict",
)
NOT_FOUND = _error("No object with this id (or a malformed id).", {"detail": "Not found."}, "Not found")
BAD_REQUEST = OpenApiResponse(
    response=OpenApiTypes.OBJECT,
    description="Invalid input: field errors name the field.",
    examples=[
        OpenApiExample(
            "Field error",
            value={"chat_bot_id": ["Must be a 24-character hexadecimal ObjectId string."]},
            response_only=True,
        )
    ],
)

AUTH_ERRORS: dict[int, OpenApiResponse] = {401: UNAUTHORIZED, 403: FORBIDDEN}


# --- The browsable API's HTML forms ----------------------------------------------------------
#
# A form sends every value as a string ("30", "0.7", a ticked checkbox's "true"), and the API's
# body fields take only the JSON type they declare (core.serializers). A form's value is read
# as the JSON value it stands for; anything else stays a string, and the field refuses it as it
# would in JSON. What a form leaves blank or out keeps DRF's meaning for forms (a blank optional
# field is left out), except that an unticked checkbox is false even where the field has a
# default (DRF would take the default: a form could never create an inactive channel).
_JSON_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]{0,30})")
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]{0,30})(?:\.[0-9]{1,30})?(?:[eE][+-]?[0-9]{1,3})?")


def _form_value(field: serializers.Field, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if isinstance(field, serializers.BooleanField):
        return {"true": True, "false": False}.get(value, value)
    if isinstance(field, serializers.IntegerField) and _JSON_INTEGER.fullmatch(value):
        return int(value)
    if isinstance(field, serializers.FloatField) and _JSON_NUMBER.fullmatch(value):
        number = float(value)
        return number if math.isfinite(number) else value
    return value


def form_values(fields: Any, data: QueryDict, *, partial: bool = False) -> QueryDict:
    """An HTML form's values typed for `fields` (still a QueryDict, so DRF reads it as a form)."""
    values = QueryDict(mutable=True)
    for name, items in data.lists():
        field = fields.get(name)
        values.setlist(name, [_form_value(field, item) for item in items] if field is not None else items)
    if not partial:
        for name, field in fields.items():
            if isinstance(field, serializers.BooleanField) and not field.read_only and name not in values:
                unticked: list[Any] = [False]  # a form sends nothing for an unticked box
                values.setlist(name, unticked)
    return values
