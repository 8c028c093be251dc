"""`{{ message.last_error|delivery_text }}`: a stored delivery result in the operator's language."""

from __future__ import annotations

from django import template

from channels_app.delivery_texts import delivery_text_display

register = template.Library()


@register.filter
def delivery_text(value: str | None) -> str:
    return delivery_text_display(value or "")
