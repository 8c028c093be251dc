"""Serializer pieces every API shares: ObjectIds travel as 24-character hex strings."""

from __future__ import annotations

import re
from typing import Any

from bson import ObjectId
from django.utils.translation import gettext_lazy as _
from django_mongodb_backend.fields import ObjectIdAutoField as ModelObjectIdAutoField
from django_mongodb_backend.fields import ObjectIdField as ModelObjectIdField
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

_OBJECT_ID = re.compile(r"^[0-9a-fA-F]{24}$")

OBJECT_ID_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": "^[0-9a-fA-F]{24}$",
    "minLength": 24,
    "maxLength": 24,
    "example": "665f1c2e9b1e8a3d4c5b6a79",
}


def is_object_id(value: object) -> bool:
    if isinstance(value, ObjectId):
        return True
    return isinstance(value, str) and bool(_OBJECT_ID.match(value))


@extend_schema_field(OBJECT_ID_SCHEMA)
class ObjectIdField(serializers.Field):
    """A MongoDB ObjectId as a string. Anything else is a 400 naming the field."""

    default_error_messages = {
        "invalid": _("Must be a 24-character hexadecimal ObjectId string."),
    }

    def to_internal_value(self, data: Any) -> ObjectId:
        # Only strings: ObjectId() would also accept 12 raw bytes or another ObjectId.
        if not isinstance(data, str) or not _OBJECT_ID.match(data):
            self.fail("invalid")
        return ObjectId(data)

    def to_representation(self, value: Any) -> str:
        return str(value)


class BaseModelSerializer(serializers.ModelSerializer):
    """DRF maps django-mongodb-backend's ObjectIdAutoField (an IntegerField subclass) to an
    integer field, which crashes on every ObjectId; map both ObjectId fields to strings."""

    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        ModelObjectIdAutoField: ObjectIdField,
        ModelObjectIdField: ObjectIdField,
    }
