"""List pagination that is opt-in: existing clients expect a plain JSON array."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

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
