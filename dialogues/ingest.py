"""Ingest: what the webhook does with a validated message. It authenticates, stores the
message (the unique index decides duplicates), records that a reply is owed, and answers.
It never waits for the LLM or a channel: the worker (`manage.py run_worker`) generates and
delivers the reply. Two round trips for a customer message: the dialogue's reservation
(which also marks it due for the worker) and the message insert.

Nothing half-written stays behind: a message is stored with its reply owed in one insert,
or not stored (and the request answered 503), in which case the channel's retry stores it.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from django.conf import settings
from django.utils import timezone

from channels_app.kinds.base import SENDER_CUSTOMER as KIND_SENDER_CUSTOMER
from channels_app.kinds.base import HistoryMessage, InboundMessage, InboundResult
from channels_app.models import Channel, DeliveryState
from channels_app.selectors import channel_cached
from chatbots.models import ChatBot
from chatbots.selectors import chatbot_cached
from chatbots.services import chatbot_authenticate
from core.caching import LookupCache
from core.errors import Conflict, NotFound
from core.ratelimit import webhook_bot_rate_check
from core.tokens import hash_secret
from core.worker_wake import worker_wake
from dialogues.documents import message_document
from dialogues.models import Dialogue, Message
from dialogues.selectors import dialogue_transcript
from dialogues.store.activity import activity_message_in
from dialogues.store.messages import burst_reply_find, message_find, message_insert, reply_find
from dialogues.store.reservation import dialogue_count_adjust, dialogue_id_find, dialogue_reserve

SENDER_CUSTOMER = "customer"
SENDER_EMPLOYEE = "employee"
# Why a stored message gets no reply (`ignored_reason`).
IGNORED_EMPLOYEE = "employee"
IGNORED_PAUSED = "paused"
IGNORED_LLM_FAILED = "llm_failed"
# How often a webhook that waits for its outcome (WEBHOOK_REPLY_WAIT_MS) looks again.
WAIT_POLL_S = 0.02

_bots_by_secret_hash = LookupCache()


def webhook_bot_authenticate(*, secret: str) -> ChatBot | None:
    """`chatbot_authenticate`, cached by the secret's hash (never the secret itself)."""
    if not secret:
        return None
    return _bots_by_secret_hash.get_or_load(hash_secret(secret), lambda: chatbot_authenticate(secret=secret))


# The usual cause of this 404 is a channel that sends its own conversation ids as chat_id.
CHANNEL_NOT_FOUND = (
    "Channel not found: chat_id names a channel unless channel_id is given; to keep many conversations "
    "on one channel send channel_id and use chat_id for the conversation"
)


def webhook_channel_resolve(*, chat_bot: ChatBot, channel_ref: str) -> Channel:
    """The bot's channel named by `channel_ref`. Another bot's channel is as unknown as a
    missing one (404), so ids of other tenants cannot be probed."""
    try:
        channel_id = ObjectId(channel_ref)
    except (InvalidId, TypeError):
        raise NotFound(CHANNEL_NOT_FOUND) from None
    channel = channel_cached(channel_id)
    if channel is None or channel.chat_bot_id != chat_bot.pk:
        raise NotFound(CHANNEL_NOT_FOUND)
    if not channel.is_active:
        raise Conflict("Channel is inactive")
    return channel


@dataclass
class WebhookResult:
    message_id: str
    dialogue_id: str
    duplicate: bool = False
    # Stored, and no reply is expected (employee messages, customer messages while the bot is
    # paused, duplicates with nothing owed).
    ignored: bool = False
    # A reply exists for this message.
    replied: bool = False
    # A reply is owed and not generated yet: the worker is on it.
    reply_pending: bool = False
    reply_message_id: str | None = None
    # "delivered", "queued" (owed to the channel), "dead", "cancelled" (an operator took the
    # chat over first), or None when there is no reply.
    delivery: str | None = None
    # Kept for the existing contract; the worker, not a duplicate, resumes unfinished work.
    resumed: bool = False
    # Why no reply is expected: "employee", "paused" (an operator has taken over), or
    # "llm_failed". In the answer only when `ignored` is true, so the shape of every other
    # answer stays the existing contract's.
    ignored_reason: str | None = None

    @property
    def outcome(self) -> str:
        if self.duplicate:
            return "duplicate"
        if self.ignored:
            return "stored_no_reply"
        if self.reply_pending:
            return "reply_pending"
        return f"replied_{self.delivery}"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["ignored_reason"] is None:
            del data["ignored_reason"]
        else:
            # The plain words for it ("ignored" reads as "not stored", which it is not): the
            # message is stored, used as context, and not answered, for `ignored_reason`.
            data["answered"] = False
        return data


def delivery_label(state: str | None) -> str | None:
    if state is None:
        return None
    if state in (DeliveryState.PENDING, DeliveryState.FAILED, DeliveryState.PARKED):
        return "queued"
    return str(state)


def webhook_message_process(
    *,
    chat_bot: ChatBot,
    chat_id: str,
    text: str,
    message_sender: str,
    message_id: str | None = None,
    channel_id: str | None = None,
    attachments: list[dict[str, Any]] | None = None,
    traceparent: str = "",
    tracestate: str = "",
) -> WebhookResult:
    """Stores one validated webhook message for an authenticated bot.

    Without `channel_id`, `chat_id` is the channel's id (the existing contract); with it,
    `chat_id` names a conversation inside that channel. Raises NotFound (404) for a channel
    that does not exist or is another bot's, Conflict (409) for an inactive one. Database
    errors propagate (the view answers 503), so nothing is acknowledged unless stored.

    `attachments` (validated: `{url, mime_type, name, size}` each) are stored with the message;
    `text` is "" for a message of attachments only.

    `traceparent`/`tracestate` (validated, `core.tracing`) are stored with the message, so
    that its reply continues the trace; without them the message starts a trace of its own."""
    channel = webhook_channel_resolve(chat_bot=chat_bot, channel_ref=channel_id if channel_id is not None else chat_id)
    message_id = message_id or str(uuid.uuid4())
    is_customer = message_sender == SENDER_CUSTOMER
    # A customer message reserves its own position and its reply's, and makes the dialogue
    # due, unless the bot is paused in the dialogue: then only its own, and nothing is owed.
    # Decided by the reservation itself (see `dialogues.store.reservation.dialogue_reserve`).
    pause_minutes = 0 if is_customer else int(chat_bot.pause_after_employee_minutes or 0)
    slot = dialogue_reserve(
        chat_bot_id=chat_bot.pk,
        channel_id=channel.pk,
        chat_id=chat_id,
        reserve=2 if is_customer else 1,
        owes_work=is_customer,
        paused_reserve=1 if is_customer else None,
        # An employee writing from the channel takes the dialogue over for a while (per bot).
        pause_until=timezone.now() + timedelta(minutes=pause_minutes) if pause_minutes > 0 else None,
    )
    result = WebhookResult(message_id=message_id, dialogue_id=str(slot.dialogue_id))
    if is_customer:
        reply_state = Message.ReplyState.PAUSED if slot.paused else Message.ReplyState.AWAITING
    else:
        reply_state = Message.ReplyState.NONE
    doc = message_document(
        dialogue_id=slot.dialogue_id,
        chat_bot_id=channel.chat_bot_id,
        channel_id=channel.pk,
        message_id=message_id,
        role=(Message.Role.USER if is_customer else Message.Role.EMPLOYEE).value,
        text=text,
        attachments=attachments,
        created_at=timezone.now(),
        seq=slot.first_seq,
        reply_state=reply_state.value,
        traceparent=traceparent or None,
        tracestate=tracestate if traceparent else "",
    )
    if not message_insert(doc):
        result.duplicate = True
        # Nothing new was stored: give back what the reservation counted for this message.
        reserved = slot.reserved
        voids = list(range(slot.first_seq, slot.first_seq + reserved)) if slot.first_seq is not None else None
        dialogue_count_adjust(dialogue_id=slot.dialogue_id, added=-reserved, voids=voids)
        return _known_state(result, dialogue_id=slot.dialogue_id)
    if is_customer:
        activity_message_in(when=doc["created_at"])
    if not is_customer:
        # Employee messages are context for the LLM later, never answered themselves.
        result.ignored = True
        result.ignored_reason = IGNORED_EMPLOYEE
        return result
    if slot.paused:
        # Stored, part of the LLM's context once the bot is back, never answered.
        result.ignored = True
        result.ignored_reason = IGNORED_PAUSED
        return result
    result.reply_pending = True
    # Stored: an idle worker on this host looks now rather than at its next poll.
    worker_wake()
    wait_ms = settings.WEBHOOK_REPLY_WAIT_MS
    if wait_ms:
        deadline = time.monotonic() + wait_ms / 1000
        _wait_for_outcome(result, dialogue_id=slot.dialogue_id, user_seq=int(doc["seq"]), deadline=deadline)
    return result


def _known_state(result: WebhookResult, *, dialogue_id: ObjectId) -> WebhookResult:
    """What is known of a message already stored: a duplicate says where its original is."""
    original = message_find(dialogue_id=dialogue_id, message_id=result.message_id)
    if original is None or original["role"] != Message.Role.USER:
        result.ignored = True
        if original is not None and original["role"] == Message.Role.EMPLOYEE:
            result.ignored_reason = IGNORED_EMPLOYEE
        return result
    _reply_state(
        result,
        dialogue_id=dialogue_id,
        user_seq=int(original.get("seq") or 0),
        replied=original.get("reply_state") == Message.ReplyState.REPLIED,
    )
    if not result.replied and original.get("reply_state") == Message.ReplyState.AWAITING:
        result.reply_pending = True
        return result
    if not result.replied:
        result.ignored = True
        if original.get("reply_state") == Message.ReplyState.PAUSED:
            result.ignored_reason = IGNORED_PAUSED
        elif original.get("reply_state") == Message.ReplyState.FAILED:
            result.ignored_reason = IGNORED_LLM_FAILED
    return result


def _reply_state(result: WebhookResult, *, dialogue_id: ObjectId, user_seq: int, replied: bool = False) -> None:
    """`replied`: the message is marked replied, so its reply exists (the read for one of a
    burst's, which scans up to it, is made only then)."""
    reply = reply_find(dialogue_id=dialogue_id, in_reply_to=result.message_id, user_seq=user_seq)
    if reply is None and replied:
        # Answered with the later messages of its burst (the burst reply policy).
        reply = burst_reply_find(dialogue_id=dialogue_id, message_id=result.message_id, user_seq=user_seq)
    if reply is None:
        return
    result.replied = True
    result.reply_pending = False
    result.reply_message_id = reply["message_id"]
    result.delivery = delivery_label(reply.get("delivery_state"))


def _wait_for_outcome(result: WebhookResult, *, dialogue_id: ObjectId, user_seq: int, deadline: float) -> None:
    """WEBHOOK_REPLY_WAIT_MS: look for the reply until it is delivered (or dead) or the wait
    is over, then answer with what is known. Never longer than the wait."""
    while True:
        _reply_state(result, dialogue_id=dialogue_id, user_seq=user_seq)
        if result.delivery in ("delivered", "dead"):
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        time.sleep(min(WAIT_POLL_S, remaining))


def kind_message_ingest(message: InboundMessage) -> InboundResult:
    """The ingest of a native kind's message (`channels_app.kinds.base.inbound_ingest`): the
    webhook's, for the channel's bot, counted against the same per-bot rate."""
    chat_bot = chatbot_cached(message.channel.chat_bot_id)
    if chat_bot is None:
        raise NotFound("Channel not found")
    webhook_bot_rate_check(str(chat_bot.pk))
    result = webhook_message_process(
        chat_bot=chat_bot,
        chat_id=message.chat_id,
        text=message.text,
        message_sender=SENDER_CUSTOMER if message.sender == KIND_SENDER_CUSTOMER else SENDER_EMPLOYEE,
        message_id=message.message_id,
        channel_id=str(message.channel.pk),
        attachments=message.attachments or None,
    )
    return InboundResult(
        message_id=result.message_id,
        dialogue_id=result.dialogue_id,
        duplicate=result.duplicate,
        details=result.as_dict(),
    )


_HISTORY_ROLES: dict[str, str] = {
    Message.Role.USER: "user",
    Message.Role.ASSISTANT: "assistant",
    Message.Role.EMPLOYEE: "employee",
}


def kind_history(channel: Channel, chat_id: str, limit: int) -> list[HistoryMessage]:
    """A native kind's conversation as its customer may see it (`channels_app.kinds.base.
    inbound_history`): the dialogue found by its key, as the webhook finds it, then its latest
    messages through the (dialogue, created_at) index; text only, no system messages."""
    dialogue_id = dialogue_id_find(chat_bot_id=channel.chat_bot_id, channel_id=channel.pk, chat_id=chat_id)
    if dialogue_id is None:
        return []
    dialogue = Dialogue.objects.filter(pk=dialogue_id).first()
    if dialogue is None:
        return []
    return [
        HistoryMessage(
            message_id=message.message_id,
            role=_HISTORY_ROLES[message.role],
            text=message.text or "",
            created_at=message.created_at,
        )
        for message in dialogue_transcript(dialogue=dialogue, limit=limit)
        # Never what the customer was not sent: a reply an operator's take-over cancelled.
        if message.role in _HISTORY_ROLES and message.delivery_state != DeliveryState.CANCELLED
    ]
