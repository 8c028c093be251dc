"""List pagination. Opt-in where existing clients expect a plain JSON array (the channels,
the bots); by default, with a cursor, where a list can grow without bound (the dialogues)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

from bson import ObjectId
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


# A cursor names a place in the list: its direction (`older`: the page after it, `newer`:
# the page before it), the last activity time there in microseconds since 1970 (`none` for
# never-active dialogues, listed last) and the id there. Every string of this pattern is a
# place, so every cursor the schema allows is served (a place past everything is an empty
# page); anything else is refused with 400 naming `cursor`.
CURSOR_PATTERN = r"^(older|newer)-(none|[0-9]{1,17})-[0-9a-f]{24}$"
CURSOR_MAX_LENGTH = 48
INVALID_CURSOR = "Not a cursor from this list's next or previous links."
_CURSOR = re.compile(CURSOR_PATTERN)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _CursorParams(serializers.Serializer):
    limit = serializers.IntegerField(required=False, min_value=1, max_value=MAX_PAGE_SIZE)
    cursor = serializers.CharField(required=False, max_length=CURSOR_MAX_LENGTH)

    def validate_cursor(self, value: str) -> str:
        if not _CURSOR.fullmatch(value):
            raise serializers.ValidationError(INVALID_CURSOR)
        return value


class KeysetView(Protocol):
    def keyset_page(self, *, position: tuple[datetime | None, ObjectId] | None, newer: bool, count: int) -> list[Any]:
        """The next `count` rows past `position` in the list's order (from the top without
        one), or with `newer` the `count` before it, nearest first."""
        ...


class KeysetCursorPagination(BasePagination):
    """A list paginated by default, `{"next", "previous", "results"}`, walked with cursors.
    Keyset on (`-last_message_at`, `-id`; a null time sorts last), so each page is one index
    range whatever its depth, and a walk neither repeats nor skips rows when many share a time
    (DRF's CursorPagination keys on the first field only and counts an offset among equal
    values). The view reads the rows (`KeysetView.keyset_page`), each as bounded as its
    indexes allow. `limit` sets the page size; `offset` is refused (400), since a cursor
    replaces it. A malformed cursor is a 400, never a 500."""

    cursor_query_param = "cursor"
    limit_query_param = "limit"
    default_limit = 50
    max_limit = MAX_PAGE_SIZE

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
        cursor = checked.validated_data.get("cursor")
        position, reverse = self._decode(cursor) if cursor else (None, False)
        rows = list(cast(KeysetView, view).keyset_page(position=position, newer=reverse, count=self.limit + 1))
        more = len(rows) > self.limit
        rows = rows[: self.limit]
        if reverse:
            rows.reverse()
        first = _place(rows[0]) if rows else position
        last = _place(rows[-1]) if rows else position
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
    def _encode(position: tuple[datetime | None, ObjectId], *, reverse: bool) -> str:
        when, pk = position
        micros = "none" if when is None else str((when - EPOCH) // timedelta(microseconds=1))
        return f"{'newer' if reverse else 'older'}-{micros}-{pk}"

    @staticmethod
    def _decode(cursor: str) -> tuple[tuple[datetime | None, ObjectId], bool]:
        direction, micros, pk = cursor.split("-")
        when = None if micros == "none" else EPOCH + timedelta(microseconds=int(micros))
        return (when, ObjectId(pk)), direction == "newer"

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
                "description": "A place in the list, taken from a `next` or `previous` link: `older-` (the "
                "page after it) or `newer-` (the page before it), the last message time there in "
                "microseconds since 1970 (`none`: never active), and a dialogue id. A value of another "
                f"form is refused with 400 `{INVALID_CURSOR}`",
                "schema": {"type": "string", "maxLength": CURSOR_MAX_LENGTH, "pattern": CURSOR_PATTERN},
            },
            {
                "name": self.limit_query_param,
                "required": False,
                "in": "query",
                "description": f"Results per page (default {self.default_limit}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_limit},
            },
        ]


def _place(row: Any) -> tuple[datetime | None, ObjectId]:
    return row.last_message_at, row.pk
