"""What every kind of channel provides (`ChannelKind`), and the port through which a kind's
inbound endpoint hands a message to the ingest.

The ingest lives above this app (`dialogues`), so it registers itself here when the apps are
ready (`ingest_register`); a kind calls `inbound_ingest` and never imports `dialogues`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from django.urls import URLPattern, URLResolver
from django.utils.functional import Promise

if TYPE_CHECKING:
    from rest_framework import serializers

    from channels_app.dispatch import AttemptOutcome
    from channels_app.kinds.forms import KindChannelForm
    from channels_app.models import Channel

SENDER_CUSTOMER = "customer"
SENDER_EMPLOYEE = "employee"


@dataclass
class InboundMessage:
    """One message a kind's endpoint received, in our terms."""

    channel: Channel
    # The conversation inside the channel (a Telegram chat, a VK peer, a web chat visitor).
    chat_id: str
    text: str
    # Stable for every resend of the same message by the service: the ingest drops repeats by it.
    message_id: str
    sender: str = SENDER_CUSTOMER
    attachments: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class InboundResult:
    message_id: str
    dialogue_id: str
    duplicate: bool
    # What the webhook would answer (`dialogues.ingest.WebhookResult.as_dict`).
    details: dict[str, Any]


_ingest: Callable[[InboundMessage], InboundResult] | None = None


def ingest_register(function: Callable[[InboundMessage], InboundResult]) -> None:
    global _ingest
    _ingest = function


def inbound_ingest(message: InboundMessage) -> InboundResult:
    """Stores `message` exactly as the webhook stores one (dedupe, employee rules, hand-off,
    the bot's rate, one dialogue per chat). Raises what the webhook's ingest raises: a database
    outage propagates (answer 503, so the service resends), `core.errors` for the rest."""
    if _ingest is None:
        raise RuntimeError("No ingest registered: is the `dialogues` app installed?")
    return _ingest(message)


@dataclass
class HistoryMessage:
    """One message of a conversation as a kind may show it to its customer (the web chat's
    history): text only, roles `user`, `assistant`, `employee`."""

    message_id: str
    role: str
    text: str
    created_at: datetime


_history: Callable[[Channel, str, int], list[HistoryMessage]] | None = None


def history_register(function: Callable[[Channel, str, int], list[HistoryMessage]]) -> None:
    global _history
    _history = function


def inbound_history(channel: Channel, chat_id: str, limit: int) -> list[HistoryMessage]:
    """The newest `limit` messages of the channel's conversation `chat_id`, oldest first (none
    when it has no dialogue yet). Registered by `dialogues`, as the ingest is."""
    if _history is None:
        raise RuntimeError("No history registered: is the `dialogues` app installed?")
    return _history(channel, chat_id, limit)


@dataclass
class KindConfig:
    """What a kind's create form gives the channel: where its outbound calls go (`url`), the
    service's credential (`token`, encrypted at rest, never shown again for a native kind), the
    kind's own secret (`secret`, encrypted) and its other options (stored as given)."""

    url: str
    token: str
    secret: str = ""
    options: dict[str, Any] = field(default_factory=dict)


class ChannelKind:
    """One kind of channel. Subclasses set the class attributes and override what applies."""

    name: ClassVar[str]
    label: ClassVar[str | Promise]
    # Replies carry Standard Webhooks signatures (only a kind whose receiver we do not control).
    signed: ClassVar[bool] = False
    # The channel's `settings.token` may be shown to those who may change the channel.
    token_visible: ClassVar[bool] = False
    # A `permanent` outcome makes the reply dead at once, without the remaining retries.
    permanent_is_final: ClassVar[bool] = True

    def send(
        self,
        *,
        channel: Channel,
        payload: dict[str, Any],
        idempotency_key: str,
        log_context: dict[str, Any],
        extra_headers: dict[str, str] | None = None,
    ) -> AttemptOutcome:
        """One attempt to deliver `payload` (a reply, an operator's message or a test message,
        `channels_app.dispatch.reply_payload`; `idempotency_key` is the same on every retry of
        it). Never raises for the service's failures: the outcome says whether a retry could
        help and when. `extra_headers` (trace context) only where the kind's request can carry
        them."""
        raise NotImplementedError

    def typing_send(
        self, *, channel: Channel, chat_id: str, state: str, log_context: dict[str, Any]
    ) -> AttemptOutcome | None:
        """One typing event, or None when the kind has none."""
        return None

    def test_send(self, *, channel: Channel, log_context: dict[str, Any]) -> AttemptOutcome:
        """The admin's "Send test message": by default a marked test payload through `send`."""
        from channels_app.dispatch import test_payload

        payload = test_payload(channel_id=str(channel.pk))
        return self.send(
            channel=channel, payload=payload, idempotency_key=payload["message_id"], log_context=log_context
        )

    def create_serializer(self) -> type[serializers.Serializer] | None:
        """The body of `POST /api/channels/kinds/<name>/`: `name`, `chat_bot_id` and the kind's
        own fields; `configure` turns its validated data into the channel's settings. None:
        created by the generic `POST /api/channels/` (the webhook kind)."""
        return None

    def configure(self, data: dict[str, Any]) -> KindConfig:
        raise NotImplementedError

    def admin_form(self) -> type[KindChannelForm] | None:
        """The admin's add/change form (`channels_app.kinds.forms.KindChannelForm`); None: the
        channel admin's own (the webhook kind)."""
        return None

    def after_save(self, channel: Channel) -> str:
        """Called after a create or an update through the kind's form: registers the channel with
        its service (Telegram's setWebhook). Returns "" or a problem to show; never raises for
        the service's failures (the channel is saved; the operator can try again)."""
        return ""

    def urls(self) -> list[URLPattern | URLResolver]:
        """The channel side's routes (inbound endpoints, a widget's files and calls), mounted at
        `/channels/<name>/`: outside `/api/`, so they are served like the webhook (the channels'
        database pool, no operators' read budget: `core.db_routing`)."""
        return []

    def api_urls(self) -> list[URLPattern | URLResolver]:
        """Operators' and integrators' routes beyond the generic create, mounted at
        `/api/channels/kinds/<name>/`."""
        return []

    def connect_panel(self, channel: Channel, *, base_url: str) -> str:
        """HTML for the admin's "how to connect" panel of a channel of this kind."""
        return ""

    def public_options(self, channel: Channel) -> dict[str, Any]:
        """What the API shows of the kind's options (never a secret)."""
        return dict(channel.kind_options or {})
