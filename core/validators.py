from __future__ import annotations

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _


def validate_no_control_characters(value: str) -> None:
    """Names are shown in lists and logs; a CR/LF or other control character in one is a
    mistake or an injection attempt, never a name."""
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in value):
        raise ValidationError(_("Must not contain control characters (such as line breaks)."), code="control")
