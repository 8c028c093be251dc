"""The VK kind: a VK community's messages, through VK's Callback API.

VK POSTs each event of the community to `/channels/vk/<channel id>/callback`
(`views.VkCallbackView`): customers' messages are stored through the webhook's ingest, the
replies and operators' messages go out by `messages.send` with the community's key
(`client`). See docs/channels/vk.md."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.urls import URLPattern, URLResolver, path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from channels_app.dispatch import AttemptOutcome
from channels_app.kinds.base import ChannelKind, KindConfig
from channels_app.kinds.vk.client import TYPING_DEADLINE_S, VkApi, answer_read, random_id_for, text_split
from channels_app.models import Channel

if TYPE_CHECKING:
    from rest_framework import serializers

    from channels_app.kinds.forms import KindChannelForm


def _failed(error: str, *, permanent: bool, elapsed_ms: float = 0.0) -> AttemptOutcome:
    return AttemptOutcome(
        ok=False, status_code=None, error=error, permanent=permanent, retry_after_s=None, elapsed_ms=elapsed_ms
    )


def _peer_id(chat_id: Any) -> str | None:
    # Our dialogue's chat_id is the VK peer_id the customer's message came from.
    text = str(chat_id or "")
    return text if text.lstrip("-").isdigit() else None


class VkKind(ChannelKind):
    name = "vk"
    label = _("VK community")
    # The community's key is VK's credential: given once, never shown again.
    token_visible = False

    def send(
        self,
        *,
        channel: Channel,
        payload: dict[str, Any],
        idempotency_key: str,
        log_context: dict[str, Any],
        extra_headers: dict[str, str] | None = None,
    ) -> AttemptOutcome:
        """A reply or an operator's message by messages.send, in parts of at most 4,096
        characters. Each part's random_id comes from the reply's idempotency key and the part's
        place, so a retry after a partial failure sends only what VK has not got yet: VK drops
        the parts it already has."""
        peer_id = _peer_id(payload.get("chat_id"))
        if peer_id is None:
            return _failed("The dialogue's chat_id is not a VK peer id", permanent=True)
        api = VkApi.of(channel)
        started = time.monotonic()
        deadline = started + settings.CHANNEL_ATTEMPT_TIMEOUT_S
        outcome = _failed("Nothing to send", permanent=True)
        for index, part in enumerate(text_split(str(payload.get("text") or ""))):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                elapsed = (time.monotonic() - started) * 1000
                return _failed(
                    f"Timed out after {settings.CHANNEL_ATTEMPT_TIMEOUT_S:g} s", permanent=False, elapsed_ms=elapsed
                )
            answer = api.call(
                "messages.send",
                {"peer_id": peer_id, "message": part, "random_id": str(random_id_for(f"{idempotency_key}:{index}"))},
                log_context={**log_context, "part": index},
                deadline_s=remaining,
            )
            outcome = answer_read(answer)
            if not outcome.ok:
                break
        return replace(outcome, elapsed_ms=round((time.monotonic() - started) * 1000, 1))

    def typing_send(
        self, *, channel: Channel, chat_id: str, state: str, log_context: dict[str, Any]
    ) -> AttemptOutcome | None:
        """VK shows "typing" for about 10 s after messages.setActivity and has no call to stop
        it: "off" sends nothing."""
        peer_id = _peer_id(chat_id)
        if state != "on" or peer_id is None:
            return None
        api = VkApi.of(channel)
        answer = api.call(
            "messages.setActivity",
            {"peer_id": peer_id, "type": "typing", "group_id": str(api.group_id)},
            log_context=log_context,
            deadline_s=TYPING_DEADLINE_S,
        )
        return answer_read(answer)

    def test_send(self, *, channel: Channel, log_context: dict[str, Any]) -> AttemptOutcome:
        """The community's key works: groups.getById answers without an error. (A message
        needs a customer who wrote to the community first.)"""
        api = VkApi.of(channel)
        answer = api.call("groups.getById", {"group_id": str(api.group_id)}, log_context=log_context)
        return answer_read(answer)

    def create_serializer(self) -> type[serializers.Serializer] | None:
        # None: the create is this package's own view (`urls`), whose answer adds the callback
        # URL and a generated secret key to the generic one.
        return None

    def configure(self, data: dict[str, Any]) -> KindConfig:
        from channels_app.kinds.vk.serializers import vk_config

        return vk_config(
            group_id=data["group_id"],
            access_token=data["access_token"],
            confirmation_code=data["confirmation_code"],
            secret=data.get("secret", ""),
            api_version=data.get("api_version", ""),
            api_base_url=data.get("api_base_url", ""),
        )

    def admin_form(self) -> type[KindChannelForm] | None:
        from channels_app.kinds.vk.forms import VkChannelForm

        return VkChannelForm

    def api_urls(self) -> list[URLPattern | URLResolver]:
        from channels_app.kinds.vk.views import VkChannelCreateView

        return [path("", VkChannelCreateView.as_view(kind=self), name="channel-kind-vk")]

    def urls(self) -> list[URLPattern | URLResolver]:
        from channels_app.kinds.vk.views import VkCallbackView

        return [path("<str:channel_id>/callback", VkCallbackView.as_view(), name="vk-callback")]

    def connect_panel(self, channel: Channel, *, base_url: str) -> str:
        options = channel.kind_options or {}
        callback_url = base_url.rstrip("/") + reverse("vk-callback", args=[str(channel.pk)])
        return format_html(
            "<h2>{}</h2>"
            '<div class="connect-row"><span class="connect-label">{}</span>'
            '<input type="text" id="connect-vk-callback-url" readonly value="{}" spellcheck="false">'
            '<button type="button" class="button" data-copy-target="connect-vk-callback-url" '
            'data-copied-label="{}">{}</button></div>'
            '<div class="connect-row"><span class="connect-label">{}</span><code>{}</code></div>'
            '<div class="connect-row"><span class="connect-label">{}</span><code>{}</code></div>'
            '<div class="connect-row"><span class="connect-label">{}</span><code>{}</code></div>'
            '<div class="connect-row"><div class="help">{}</div></div>',
            _("How to connect"),
            _("Server URL"),
            callback_url,
            _("Copied"),
            _("Copy"),
            _("Community id"),
            options.get("group_id", ""),
            _("Confirmation code"),
            options.get("confirmation_code", ""),
            _("API version"),
            options.get("api_version", ""),
            _(
                "In the community: Manage → API usage → Callback API. Server settings: this URL, the "
                "API version above and the secret key given when the channel was made; Event types: "
                "Incoming message (and Outgoing message, to record operators' messages). The community "
                "key (Access tokens) needs the Messages permission; Messages must be on."
            ),
        )


KIND = VkKind()
