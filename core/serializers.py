"""Serializer pieces every API shares: ObjectIds travel as 24-character hex strings."""

from __future__ import annotations

import re
from typing import Any

from bson import ObjectId
from django.core.validators import RegexValidator
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


# --- Strict input fields -------------------------------------------------------------------
#
# DRF's fields coerce: CharField turns 0 into "0", BooleanField reads "yes" and 1 as true,
# IntegerField and FloatField read "5" and true. A JSON body that gives the wrong type is a
# client's mistake the schema says we refuse, so the API's body fields take only the JSON type
# they declare. (Query parameters arrive as strings: their numbers and booleans keep DRF's
# fields, which parse them.)
#
# Patterns are checked on the value as sent, before DRF trims it, with Python's `re.search`:
# the reading schema-driven clients and fuzzers give the pattern in the schema.
CONTROL_CHARACTERS = "\\u0000-\\u001f\\u007f-\\u009f"
# DRF refuses NUL in every string (ProhibitNullCharactersValidator): the schema says so.
NO_NUL_PATTERN = "^[^\\u0000]*$"
NO_CONTROL_CHARACTERS_PATTERN = f"^[^{CONTROL_CHARACTERS}]*$"
# A name: no control characters, and at least one character that is not whitespace.
NAME_PATTERN = f"^[^{CONTROL_CHARACTERS}]*[^\\s{CONTROL_CHARACTERS}][^{CONTROL_CHARACTERS}]*$"
CONTROL_CHARACTERS_MESSAGE = _("Must not contain control characters (such as line breaks).")


class _SchemaPattern(RegexValidator):
    """Declares a StrictCharField's pattern in the schema (drf-spectacular reads RegexValidators);
    the field itself checks it, on the untrimmed value."""

    def __call__(self, value: Any) -> None:
        return None


class StrictCharField(serializers.CharField):
    """A JSON string only, checked as sent: `max_length`, `min_length` and `pattern` apply to the
    value before whitespace is trimmed, exactly as the schema states them."""

    default_error_messages = {
        "invalid": _("Must be a string."),
        "pattern": _("Null characters are not allowed."),
    }

    def __init__(self, *, pattern: str = NO_NUL_PATTERN, pattern_message: Any = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.pattern = re.compile(pattern)
        if pattern_message is not None:
            self.error_messages["pattern"] = pattern_message
        self.validators.append(_SchemaPattern(self.pattern))

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        if self.max_length is not None and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)
        if self.min_length is not None and len(data) < self.min_length:
            self.fail("min_length", min_length=self.min_length)
        if data and not self.pattern.search(data):
            self.fail("blank" if not data.strip() and not self.allow_blank else "pattern")
        return super().to_internal_value(data)


def strict_name_field(**kwargs: Any) -> StrictCharField:
    """A display name: no control characters, not blank."""
    return StrictCharField(pattern=NAME_PATTERN, pattern_message=CONTROL_CHARACTERS_MESSAGE, **kwargs)


class StrictBooleanField(serializers.BooleanField):
    """`true` or `false` only: not "true", "yes" or 1."""

    default_error_messages = {"invalid": _("Must be a boolean (true or false).")}

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictIntegerField(serializers.IntegerField):
    """A JSON number with no fractional part: not a string, not a boolean."""

    default_error_messages = {"invalid": _("Must be an integer.")}

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        if isinstance(data, float) and not data.is_integer():
            self.fail("invalid")
        return int(data)


class StrictFloatField(serializers.FloatField):
    """A JSON number: not a string, not a boolean."""

    default_error_messages = {"invalid": _("Must be a number.")}

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        try:
            return float(data)
        except OverflowError:  # an integer too large for a float: far out of any range
            self.fail("max_value", max_value=self.max_value)
            raise
