"""The adapter design: a channel's kind decides how it delivers, and a kind's inbound endpoint
stores through the webhook's own ingest."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from channels_app import kinds
from channels_app.dispatch import AttemptOutcome, channel_send
from channels_app.kinds.base import ChannelKind, InboundMessage, KindConfig, inbound_ingest
from channels_app.models import Channel
from channels_app.services import channel_create_of_kind
from chatbots.tests.factories import ChatBotFactory
from dialogues.models import Message

pytestmark = pytest.mark.django_db


class RecordingKind(ChannelKind):
    name = "recording"
    label = "Recording"

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, *, channel: Channel, payload: dict[str, Any], idempotency_key: str, **_: Any) -> AttemptOutcome:
        self.sent.append({"channel": channel.pk, "payload": payload, "key": idempotency_key})
        return AttemptOutcome(ok=True, status_code=200, error="", permanent=False, retry_after_s=None, elapsed_ms=1)


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> RecordingKind:
    kind = RecordingKind()
    registered = {**kinds.kinds_all(), kind.name: kind}
    monkeypatch.setattr(kinds, "kinds_all", lambda: registered)
    return kind


def _channel(kind: str = "recording") -> Channel:
    return channel_create_of_kind(
        chat_bot=ChatBotFactory(),
        name="Native",
        kind=kind,
        config=KindConfig(url="https://api.example.com", token="service-token", secret="s3", options={"a": 1}),
    )


def test_a_channel_is_sent_to_by_its_kind(recording: RecordingKind) -> None:
    channel = _channel()
    stored = Channel.objects.get(pk=channel.pk)
    assert (stored.kind, stored.kind_options, stored.kind_secret) == ("recording", {"a": 1}, "s3")
    assert stored.settings.token == "service-token"
    outcome = channel_send(channel=stored, payload={"text": "hi"}, idempotency_key="r-1", log_context={})
    assert outcome.ok and recording.sent == [{"channel": channel.pk, "payload": {"text": "hi"}, "key": "r-1"}]


def test_the_kind_secret_is_encrypted_at_rest(recording: RecordingKind) -> None:
    from core.mongo import mongo_collection

    channel = _channel()
    raw = mongo_collection(Channel._meta.db_table).find_one({"_id": channel.pk})
    assert raw is not None and raw["kind_secret"] != "s3" and raw["settings"]["token"] != "service-token"


def test_inbound_goes_through_the_webhooks_ingest(recording: RecordingKind) -> None:
    channel = _channel()
    message = InboundMessage(channel=channel, chat_id="tg-42", text="Hello", message_id="tg-update-7")
    first = inbound_ingest(message)
    again = inbound_ingest(message)
    assert not first.duplicate and again.duplicate and again.dialogue_id == first.dialogue_id
    stored = Message.objects.filter(channel_id=channel.pk, message_id="tg-update-7")
    assert stored.count() == 1
    assert stored.get().reply_state == Message.ReplyState.AWAITING
    employee = InboundMessage(channel=channel, chat_id="tg-42", text="Hi", message_id="e-1", sender="employee")
    assert inbound_ingest(employee).details["ignored_reason"] == "employee"


@pytest.mark.parametrize("permanent", [True, False])
def test_a_native_kinds_final_answer_makes_the_reply_dead_at_once(
    recording: RecordingKind, drain: Callable[[], None], permanent: bool
) -> None:
    def refuse(**_: Any) -> AttemptOutcome:
        return AttemptOutcome(
            ok=False, status_code=403, error="blocked", permanent=permanent, retry_after_s=None, elapsed_ms=1
        )

    recording.send = refuse  # type: ignore[method-assign]
    channel = _channel()
    inbound_ingest(InboundMessage(channel=channel, chat_id="c-1", text="Hello", message_id="u-1"))
    drain()
    reply = Message.objects.get(channel_id=channel.pk, role=Message.Role.ASSISTANT)
    assert reply.delivery_attempts == 1
    assert reply.delivery_state == ("dead" if permanent else "failed")
