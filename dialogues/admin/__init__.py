"""Operators' screens for dialogues (`dialogues`) and undelivered replies (`deliveries`).
Importing the package registers both with the admin site."""

from dialogues.admin.deliveries import DeliveryAdmin
from dialogues.admin.dialogues import DialogueAdmin

__all__ = ["DeliveryAdmin", "DialogueAdmin"]
