"""What the admin says about a message's progress, read from the state the worker keeps:
the dialogue's queue (`done_seq`, `work_due_at`, `parked`: `dialogues.store.claims`), the
message's own retry, and its channel's breaker. A status names what is being waited for and
until when; "the bot is answering" only when nothing holds the reply back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone
from django.utils.translation import gettext, ngettext

from channels_app.models import Channel, DeliveryState
from core.datetimes import aware
from dialogues.admin.common import datetime_display
from dialogues.models import Dialogue, Message
from dialogues.store.collections import dialogues_collection

# A retry this late is the worker's to pick up at once; later than this, it is overdue.
OVERDUE_AFTER = timedelta(seconds=60)
# The replies that hold the messages after them in their chat until they reach the channel.
HOLDING = (DeliveryState.PENDING, DeliveryState.FAILED, DeliveryState.PARKED)
# The worker's reasons for parking a dialogue (`worker.pipeline`), stored in English.
PARKED_REASONS = {
    "The channel is inactive": lambda: gettext("its channel is inactive"),
    "The channel was deleted": lambda: gettext("its channel was deleted"),
}


@dataclass(frozen=True)
class Status:
    state: str  # the bubble's CSS class: paused, waiting, retrying, awaiting
    text: str


def _queue(dialogue: Dialogue) -> dict[str, Any]:
    return (
        dialogues_collection().find_one({"_id": dialogue.pk}, {"done_seq": 1, "work_due_at": 1, "parked": 1, "_id": 0})
        or {}
    )


def awaiting_statuses(*, dialogue: Dialogue, messages: list[Message], now: datetime | None = None) -> dict[Any, Status]:
    """The status of each customer message in `messages` whose reply is owed, by its pk.
    Reads the dialogue's queue (and its channel's breaker) only when there is one."""
    awaiting = [m for m in messages if m.role == Message.Role.USER and m.reply_state == Message.ReplyState.AWAITING]
    if not awaiting:
        return {}
    now = now or timezone.now()
    if dialogue.is_paused:
        paused = Status("paused", gettext("not answered yet: the bot is paused in this chat"))
        return {m.pk: paused for m in awaiting}
    queue = _queue(dialogue)
    due = aware(queue["work_due_at"]) if queue.get("work_due_at") else None
    breaker = Channel.objects.filter(pk=dialogue.channel_id).values_list("breaker_open_until", flat=True).first()
    statuses = {}
    for message in awaiting:
        statuses[message.pk] = _status(message, messages=messages, queue=queue, due=due, breaker=breaker, now=now)
    return statuses


def _status(
    message: Message,
    *,
    messages: list[Message],
    queue: dict[str, Any],
    due: datetime | None,
    breaker: datetime | None,
    now: datetime,
) -> Status:
    parked = queue.get("parked")
    if parked:
        reason = PARKED_REASONS.get(parked)
        return Status("waiting", gettext("waiting: %(reason)s") % {"reason": reason() if reason else parked})
    seq = message.seq or 0
    holding = next(
        (
            m
            for m in messages
            if (m.seq or 0) < seq and (m.seq or 0) > int(queue.get("done_seq") or 0) and m.delivery_state in HOLDING
        ),
        None,
    )
    if holding is not None:
        return Status(
            "waiting",
            gettext("waiting for an earlier reply to reach the channel; %(next)s")
            % {"next": next_attempt_text(holding, breaker=breaker, now=now)},
        )
    if message.llm_attempts and message.next_attempt_at is not None:
        return Status(
            "retrying",
            ngettext(
                "the LLM failed (%(attempts)d attempt); %(next)s",
                "the LLM failed (%(attempts)d attempts); %(next)s",
                message.llm_attempts,
            )
            % {"attempts": message.llm_attempts, "next": _next_text(aware(message.next_attempt_at), now=now)},
        )
    if breaker is not None and aware(breaker) > now:
        return Status(
            "waiting",
            gettext("waiting: the channel's breaker is open until %(time)s") % {"time": datetime_display(breaker)},
        )
    if due is not None and due > now + OVERDUE_AFTER:
        return Status("waiting", gettext("waiting until %(time)s") % {"time": datetime_display(due)})
    return Status("awaiting", gettext("the bot is answering…"))


def _next_text(when: datetime, *, now: datetime, in_a_sentence: bool = True) -> str:
    """When a retry is due: a time ahead, "now" within OVERDUE_AFTER of it, else overdue (the
    worker would have taken it). `in_a_sentence`: "next attempt at ..."; else for a column
    named "next attempt"."""
    if when > now:
        if not in_a_sentence:
            return datetime_display(when)
        return gettext("next attempt at %(time)s") % {"time": datetime_display(when)}
    if when > now - OVERDUE_AFTER:
        return gettext("next attempt now") if in_a_sentence else gettext("now")
    if in_a_sentence:
        return gettext("next attempt overdue since %(time)s: is the worker running?") % {"time": datetime_display(when)}
    return gettext("overdue since %(time)s: is the worker running?") % {"time": datetime_display(when)}


def next_attempt_text(
    reply: Message, *, breaker: datetime | None, now: datetime | None = None, in_a_sentence: bool = True
) -> str:
    """When a reply owed to its channel is attempted next: its own retry time, or its
    channel's breaker's probe when that is later; "now" or "overdue" rather than a time past."""
    now = now or timezone.now()
    if reply.delivery_state not in (DeliveryState.PENDING, DeliveryState.FAILED):
        return "—"
    if reply.claimed_until is not None and aware(reply.claimed_until) > now:
        return gettext("now (a worker is posting it)")
    when = aware(reply.next_attempt_at) if reply.next_attempt_at is not None else now
    if breaker is not None and aware(breaker) > max(when, now):
        if in_a_sentence:
            text = gettext("next attempt at %(time)s, when the channel's breaker lets a probe through")
        else:
            text = gettext("%(time)s, when the channel's breaker lets a probe through")
        return text % {"time": datetime_display(breaker)}
    return _next_text(when, now=now, in_a_sentence=in_a_sentence)


def reply_hint(dialogue: Dialogue, *, now: datetime | None = None) -> str:
    """What sending a message from the chat view does to the bot here: it pauses it for the
    bot's `pause_after_operator_reply_minutes`, never shortening a longer pause in force
    (`dialogues.services_operators.operator_message_send`)."""
    now = now or timezone.now()
    minutes = int(dialogue.chat_bot.pause_after_operator_reply_minutes or 0)
    if dialogue.is_paused:
        ends = dialogue.pause_ends_at
        if ends is None:
            return gettext("The bot stays paused here until it is given back.")
        if minutes == 0 or ends >= now + timedelta(minutes=minutes):
            return gettext("The bot stays paused here until %(time)s.") % {"time": datetime_display(ends)}
    if minutes == 0:
        return ""
    return ngettext(
        "Sending pauses the bot here for %(counter)s minute.",
        "Sending pauses the bot here for %(counter)s minutes.",
        minutes,
    ) % {"counter": minutes}
