"""The Telegram kind (docs/channels/telegram.md)."""

from __future__ import annotations

from channels_app.kinds.telegram.kind import TelegramKind

KIND = TelegramKind()
