"""List pagination. Opt-in where existing clients expect a plain JSON array (the channels,
the bots); by default, with a cursor, where a list can grow without bound (the dialogues)."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Q
from rest_framework import serializers
from rest_framework.pagination import BasePagination, LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

MAX_PAGE_SIZE = 500


class _PageParams(serializers.Serializer):
    limit = serializers.IntegerField(required=False, min_value=1, max_value=MAX_PAGE_SIZE)
    offset = serializers.IntegerField(required=False, min_value=0, max_value=10_000_000)


class OptionalLimitOffsetPagination(LimitOffsetPagination):
    """Without `limit` or `offset` the list is a plain array (the existing contract); with
    either, the `{"count", "next", "previous", "results"}` envelope. Bad values are a 400
    naming the parameter rather than being silently replaced."""

    default_limit = 50
    max_limit = MAX_PAGE_SIZE

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> list[Any] | None:
        params = request.query_params
        if self.limit_query_param not in params and self.offset_query_param not in params:
            return None
        checked = _PageParams(data={k: params[k] for k in ("limit", "offset") if k in params})
        checked.is_valid(raise_exception=True)
        return super().paginate_queryset(queryset, request, view)

    def get_paginated_response_schema(self, schema: Any) -> Any:
        # Document both shapes: the plain array by default, the envelope with limit/offset.
        if not isinstance(schema, dict):
            # drf-spectacular probes with a sentinel to shape list examples: those show the
            # default, plain-array form.
            return schema
        envelope = super().get_paginated_response_schema(schema)
        return {"oneOf": [schema, envelope]}

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["description"] = (
                f"{parameter['description']} Giving `limit` or `offset` switches the answer from a "
                "plain array to a paginated envelope."
            )
            parameter["schema"]["minimum"] = 1 if parameter["name"] == self.limit_query_param else 0
            if parameter["name"] == self.limit_query_param:
                parameter["schema"]["maximum"] = MAX_PAGE_SIZE
        return parameters


# A cursor is base64url (unpadded) JSON the server wrote. One that matches the pattern but
# was not written by the server is refused with INVALID_CURSOR, which no schema can state.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+$"
CURSOR_MAX_LENGTH = 512
INVALID_CURSOR = "Not a cursor from this list's next or previous links."


class _CursorParams(serializers.Serializer):
    limit = serializers.IntegerField(required=False, min_value=1, max_value=MAX_PAGE_SIZE)
    cursor = serializers.RegexField(CURSOR_PATTERN, required=False, max_length=CURSOR_MAX_LENGTH)


class KeysetCursorPagination(BasePagination):
    """A list paginated by default, `{"next", "previous", "results"}`, walked with opaque
    cursors. Keyset on every field of `ordering` (all descending; the last one unique, the
    first may be null and then sorts last), so each page is one index range whatever its depth,
    and a walk neither repeats nor skips rows when many share the first field (DRF's
    CursorPagination keys on the first field only and counts an offset among equal values).
    `limit` sets the page size; `offset` is refused (400), since a cursor replaces it. A
    malformed or forged cursor is a 400, never a 500."""

    cursor_query_param = "cursor"
    limit_query_param = "limit"
    default_limit = 50
    max_limit = MAX_PAGE_SIZE
    ordering: tuple[str, ...] = ("-last_message_at", "-id")

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> list[Any] | None:
        params = request.query_params
        if "offset" in params:
            raise serializers.ValidationError(
                {"offset": ["Not supported on this list: follow the `next` and `previous` links (`cursor`)."]}
            )
        checked = _CursorParams(data={k: params[k] for k in ("limit", "cursor") if k in params})
        checked.is_valid(raise_exception=True)
        self.request = request
        self.limit = checked.validated_data.get("limit", self.default_limit)
        fields = [name.removeprefix("-") for name in self.ordering]
        assert all(name.startswith("-") for name in self.ordering), "descending orderings only"
        cursor = checked.validated_data.get("cursor")
        position, reverse = self._decode(queryset.model, fields, cursor) if cursor else (None, False)
        if position is not None:
            queryset = queryset.filter(_after(fields, position, reverse=reverse))
        order = [f"{name}" if reverse else f"-{name}" for name in fields]
        rows = list(queryset.order_by(*order)[: self.limit + 1])
        more = len(rows) > self.limit
        rows = rows[: self.limit]
        if reverse:
            rows.reverse()
        first = [_value(rows[0], name) for name in fields] if rows else position
        last = [_value(rows[-1], name) for name in fields] if rows else position
        # Walking forward: more after is `more`, and rows lie before whenever a cursor led
        # here. Walking back: the mirror image.
        has_next = (not reverse and more) or (reverse and last is not None)
        has_previous = (reverse and more) or (not reverse and position is not None)
        self.next_cursor = self._encode(last, reverse=False) if has_next and last is not None else None
        self.previous_cursor = self._encode(first, reverse=True) if has_previous and first is not None else None
        return rows

    def get_paginated_response(self, data: Any) -> Response:
        return Response(
            {"next": self._link(self.next_cursor), "previous": self._link(self.previous_cursor), "results": data}
        )

    def _link(self, cursor: str | None) -> str | None:
        if cursor is None:
            return None
        # The request's other parameters (filters, limit) ride along.
        url = self.request.build_absolute_uri()
        return replace_query_param(url, self.cursor_query_param, cursor)

    @staticmethod
    def _encode(position: list[Any], *, reverse: bool) -> str:
        values = [None if v is None else v.isoformat() if isinstance(v, datetime) else str(v) for v in position]
        raw = json.dumps({"p": values, "r": reverse}, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @staticmethod
    def _decode(model: Any, fields: list[str], cursor: str) -> tuple[list[Any], bool]:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            data = json.loads(raw)
            values = data["p"]
            reverse = data["r"]
            if not isinstance(values, list) or len(values) != len(fields) or not isinstance(reverse, bool):
                raise ValueError("shape")
            position: list[Any] = []
            for index, (name, value) in enumerate(zip(fields, values, strict=True)):
                if value is None and index == 0:
                    position.append(None)
                    continue
                if not isinstance(value, str):
                    raise ValueError("value")
                field = model._meta.get_field(name)
                converted = field.to_python(value)
                if converted is None:
                    raise ValueError("value")
                position.append(converted)
        except (ValueError, TypeError, KeyError, UnicodeDecodeError, binascii.Error, DjangoValidationError):
            raise serializers.ValidationError({"cursor": [INVALID_CURSOR]}) from None
        return position, reverse

    def get_paginated_response_schema(self, schema: Any) -> Any:
        return {
            "type": "object",
            "required": ["next", "previous", "results"],
            "properties": {
                "next": {
                    "type": "string",
                    "nullable": True,
                    "format": "uri",
                    "description": "The next page (older), or null on the last one.",
                },
                "previous": {
                    "type": "string",
                    "nullable": True,
                    "format": "uri",
                    "description": "The previous page (newer), or null on the first one.",
                },
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": "An opaque position, taken from a `next` or `previous` link; any other "
                f"value is refused with 400 `{INVALID_CURSOR}`",
                "schema": {"type": "string", "minLength": 1, "maxLength": CURSOR_MAX_LENGTH, "pattern": CURSOR_PATTERN},
            },
            {
                "name": self.limit_query_param,
                "required": False,
                "in": "query",
                "description": f"Results per page (default {self.default_limit}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_limit},
            },
        ]


def _value(row: Any, name: str) -> Any:
    return row.pk if name in ("id", "pk") else getattr(row, name)


def _after(fields: list[str], position: list[Any], *, reverse: bool) -> Q:
    """The rows past `position` in descending order of `fields` (before it with `reverse`),
    a null first field counting as the lowest value."""
    head, *rest = fields
    head_value, *rest_values = position
    tail = Q()
    # Equal on the first field, past the position on the rest (they are never null).
    for index, name in enumerate(rest):
        equal = Q(**{f"{prior}": value for prior, value in zip(rest[:index], rest_values[:index], strict=True)})
        tail |= equal & Q(**{f"{name}__{'gt' if reverse else 'lt'}": rest_values[index]})
    if head_value is None:
        same = Q(**{f"{head}__isnull": True}) & tail
        return Q(**{f"{head}__isnull": False}) | same if reverse else same
    same = Q(**{head: head_value}) & tail
    if reverse:
        return Q(**{f"{head}__gt": head_value}) | same
    return Q(**{f"{head}__lt": head_value}) | Q(**{f"{head}__isnull": True}) | same
