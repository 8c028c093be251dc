"""The web chat: a widget any site embeds with one script tag (`webchat.js`). Visitors talk to
the bot from the page; replies and operators' messages reach the open widgets through the
stream process (`stream.py`) within a second. See docs/channels/webchat.md."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from django.urls import URLPattern, URLResolver, path
from django.utils.translation import gettext_lazy as _
from pymongo.errors import PyMongoError

from channels_app.kinds.base import ChannelKind, KindConfig
from channels_app.kinds.webchat.options import channel_origins

if TYPE_CHECKING:
    # Not at import: the stream process (`python -m channels_app.kinds.webchat.stream`) imports
    # this package before Django is set up.
    from rest_framework import serializers

    from channels_app.dispatch import AttemptOutcome
    from channels_app.kinds.forms import KindChannelForm
    from channels_app.models import Channel

# A reply's role in the payload -> the role the widget shows.
_ROLES = {"ASSISTANT": "assistant", "EMPLOYEE": "employee"}


def _outcome(started: float, *, ok: bool, error: str = "") -> AttemptOutcome:
    from channels_app.dispatch import AttemptOutcome

    return AttemptOutcome(
        ok=ok,
        status_code=200 if ok else None,
        error=error,
        permanent=False,
        retry_after_s=None,
        elapsed_ms=(time.monotonic() - started) * 1000,
    )


class WebchatKind(ChannelKind):
    name = "webchat"
    label = _("Web chat widget")

    def send(
        self,
        *,
        channel: Channel,
        payload: dict[str, Any],
        idempotency_key: str,
        log_context: dict[str, Any],
        extra_headers: dict[str, str] | None = None,
    ) -> AttemptOutcome:
        """The reply is stored in its dialogue already: delivering it is one event for the open
        widgets of its conversation (a retry finds it there and is done)."""
        from channels_app.kinds.webchat.events import event_insert

        started = time.monotonic()
        try:
            event_insert(
                key=f"out-{channel.pk}-{idempotency_key}",
                channel_id=str(channel.pk),
                chat_id=str(payload.get("chat_id") or ""),
                body={
                    "type": "message",
                    "role": _ROLES.get(str(payload.get("role") or "ASSISTANT"), "assistant"),
                    "text": str(payload.get("text") or ""),
                    "message_id": str(payload.get("message_id") or ""),
                },
            )
        except PyMongoError as exc:
            return _outcome(started, ok=False, error=f"database: {type(exc).__name__}")
        return _outcome(started, ok=True)

    def typing_send(
        self, *, channel: Channel, chat_id: str, state: str, log_context: dict[str, Any]
    ) -> AttemptOutcome | None:
        from channels_app.kinds.webchat.events import event_insert

        started = time.monotonic()
        try:
            event_insert(
                key=f"typing-{channel.pk}-{chat_id}-{state}-{time.time_ns()}",
                channel_id=str(channel.pk),
                chat_id=chat_id,
                body={"type": "typing", "state": state},
            )
        except PyMongoError as exc:
            return _outcome(started, ok=False, error=f"database: {type(exc).__name__}")
        return _outcome(started, ok=True)

    def create_serializer(self) -> type[serializers.Serializer]:
        from channels_app.kinds.webchat.serializers import WebchatChannelCreateSerializer

        return WebchatChannelCreateSerializer

    def configure(self, data: dict[str, Any]) -> KindConfig:
        origins = list(data["allowed_origins"])
        # The first origin is the channel's site; no service credential (a blank token makes
        # the channel a generated one it never uses).
        return KindConfig(
            url=origins[0], token="", options={"allowed_origins": origins, "title": data.get("title", "")}
        )

    def admin_form(self) -> type[KindChannelForm]:
        from channels_app.kinds.webchat.forms import WebchatChannelForm

        return WebchatChannelForm

    def urls(self) -> list[URLPattern | URLResolver]:
        from channels_app.kinds.webchat import views

        return [
            path("webchat.js", views.script_view, name="webchat-script"),
            path("<str:channel_id>/session", views.SessionView.as_view(), name="webchat-session"),
            path("<str:channel_id>/messages", views.MessagesView.as_view(), name="webchat-messages"),
            path("<str:channel_id>/try", views.try_view, name="webchat-try"),
        ]

    def connect_panel(self, channel: Channel, *, base_url: str) -> str:
        from channels_app.kinds.webchat.views import render

        base = base_url.rstrip("/")
        script = f"{base}/channels/webchat/webchat.js"
        return render(
            "webchat_panel.html",
            {
                "snippet": f'<script src="{script}" data-channel="{channel.pk}" async></script>',
                "origins": channel_origins(channel.kind_options),
                "try_url": f"/channels/webchat/{channel.pk}/try",
            },
        )

    def public_options(self, channel: Channel) -> dict[str, Any]:
        options = channel.kind_options or {}
        return {"allowed_origins": channel_origins(options), "title": str(options.get("title") or "")}


KIND = WebchatKind()
