"""Hand-off between the bot and human operators, one function per action, called alike by the
API (`dialogues.views_operators`) and the admin (`dialogues.admin`).

- The bot is paused in a dialogue while `Dialogue.paused_until` lies ahead (see
  `dialogues.models`): customer messages are stored and never answered (decided when each is
  reserved, `dialogues.store.reservation.dialogue_reserve`). A pause ends by itself when its time
  is up; "until resumed" is `PAUSED_INDEFINITELY`.
- Taking over (an operator's pause) also cancels what the bot still owed the chat: its
  replies not yet delivered are never sent (`cancelled`), and customer messages still
  awaiting a reply get none, so nothing of the bot's reaches the customer after the
  operator's messages (`dialogues.store.handoff.dialogue_take_over`).
- An operator's message is stored as an EMPLOYEE message with its delivery owed and handed to
  the worker exactly like a bot reply: a position in the dialogue (so it reaches the chat in
  order with the bot's replies), the same fenced delivery, retries, parking and dead state.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone

from channels_app.models import DeliveryState
from chatbots.models import PAUSE_MAX_MINUTES
from core.errors import ApplicationError, NotFound
from core.worker_wake import worker_wake
from dialogues.documents import message_document
from dialogues.models import PAUSED_INDEFINITELY, Dialogue, Message
from dialogues.selectors_inbox import inbox_forget
from dialogues.store.attention import dialogue_assign, dialogue_attention_clear, dialogue_seen
from dialogues.store.handoff import dialogue_pause_set, dialogue_paused_until, dialogue_take_over
from dialogues.store.messages import message_insert
from dialogues.store.reservation import dialogue_count_adjust, dialogue_reserve_existing

OPERATOR_TEXT_MAX_LENGTH = 32 * 1024


def _refreshed(dialogue: Dialogue) -> Dialogue:
    dialogue.paused_until = dialogue_paused_until(dialogue_id=dialogue.pk)
    return dialogue


def dialogue_pause(*, dialogue: Dialogue, minutes: int | None = None) -> Dialogue:
    """An operator takes the dialogue over: pauses the bot for `minutes`, or until resumed
    (None), and cancels every bot reply the chat is still owed. Replaces any pause in force:
    an operator's explicit choice wins, shorter or longer."""
    if minutes is not None and not 1 <= minutes <= PAUSE_MAX_MINUTES:
        raise ApplicationError(f"minutes must be between 1 and {PAUSE_MAX_MINUTES}")
    until = PAUSED_INDEFINITELY if minutes is None else timezone.now() + timedelta(minutes=minutes)
    if dialogue_take_over(dialogue_id=dialogue.pk, until=until) is None:
        raise NotFound("Not found.")
    inbox_forget()
    return _refreshed(dialogue)


def dialogue_resume(*, dialogue: Dialogue) -> Dialogue:
    """Gives the dialogue back to the bot now. Customer messages that came in meanwhile stay
    unanswered; the next one is answered."""
    if not dialogue_pause_set(dialogue_id=dialogue.pk, until=None):
        raise NotFound("Not found.")
    return _refreshed(dialogue)


def operator_message_send(*, dialogue: Dialogue, author: AbstractBaseUser | AnonymousUser, text: str) -> Message:
    """Stores an operator's message to the customer and hands it to the worker, which delivers
    it to the channel (payload role `EMPLOYEE`) in order with the bot's replies. Pauses the bot
    in the dialogue for its bot's `pause_after_operator_reply_minutes` (never shortening a
    longer pause already in force)."""
    if not text.strip():
        raise ApplicationError("text must not be blank")
    if len(text) > OPERATOR_TEXT_MAX_LENGTH:
        raise ApplicationError(f"text must be at most {OPERATOR_TEXT_MAX_LENGTH} characters")
    minutes = int(dialogue.chat_bot.pause_after_operator_reply_minutes or 0)
    slot = dialogue_reserve_existing(
        dialogue_id=dialogue.pk,
        reserve=1,
        owes_work=True,
        pause_until=timezone.now() + timedelta(minutes=minutes) if minutes > 0 else None,
    )
    if slot is None:
        raise NotFound("Not found.")
    author_pk: Any = getattr(author, "pk", None)
    doc = {
        **message_document(
            dialogue_id=dialogue.pk,
            chat_bot_id=dialogue.chat_bot_id,
            channel_id=dialogue.channel_id,
            message_id=str(uuid.uuid4()),
            role=Message.Role.EMPLOYEE.value,
            text=text,
            created_at=timezone.now(),
            seq=slot.first_seq,
            delivery_state=DeliveryState.PENDING.value,
        ),
        "author_id": author_pk,
        "author_username": author.get_username() or None,
    }
    if not message_insert(doc):  # a fresh UUID: cannot collide; a failure here is a bug
        dialogue_count_adjust(dialogue_id=dialogue.pk, added=-1, voids=[slot.first_seq] if slot.first_seq else None)
        raise ApplicationError("The message could not be stored; try again", status=409)
    worker_wake()
    return Message.objects.get(pk=doc["_id"])


# --- The inbox: who handles a dialogue, notes, resolving -------------------------------------

NOTE_TEXT_MAX_LENGTH = 8 * 1024


def dialogue_assign_to(*, dialogue: Dialogue, user: AbstractBaseUser | None) -> Dialogue:
    """Assigns the dialogue to `user` (None: unassigns it). What they have seen starts now."""
    user_id: Any = getattr(user, "pk", None)
    if not dialogue_assign(dialogue_id=dialogue.pk, user_id=user_id, username=user.get_username() if user else ""):
        raise NotFound("Not found.")
    if user_id is not None:
        dialogue_seen(dialogue_id=dialogue.pk, seq=int(dialogue.last_seq or 0))
    inbox_forget()
    dialogue.assignee_id = user_id
    dialogue.assignee_name = user.get_username() if user else ""
    return dialogue


def dialogue_opened(*, dialogue: Dialogue, user: AbstractBaseUser | AnonymousUser) -> None:
    """The dialogue's page was opened: for its assignee, what it shows is read."""
    if dialogue.assignee_id is not None and str(dialogue.assignee_id) == str(getattr(user, "pk", "")):
        if int(dialogue.last_seq or 0) > int(dialogue.seen_seq or 0):
            dialogue_seen(dialogue_id=dialogue.pk, seq=int(dialogue.last_seq or 0))


def dialogue_resolve(*, dialogue: Dialogue) -> Dialogue:
    """ "Resolve": the dialogue leaves the inbox and the bot answers it again."""
    if not dialogue_attention_clear(dialogue_id=dialogue.pk):
        raise NotFound("Not found.")
    dialogue_pause_set(dialogue_id=dialogue.pk, until=None)
    inbox_forget()
    return _refreshed(dialogue)


def operator_note_add(*, dialogue: Dialogue, author: AbstractBaseUser | AnonymousUser, text: str) -> Message:
    """A private note in the transcript: never sent, never shown to the LLM, never answered."""
    if not text.strip():
        raise ApplicationError("text must not be blank")
    if len(text) > NOTE_TEXT_MAX_LENGTH:
        raise ApplicationError(f"text must be at most {NOTE_TEXT_MAX_LENGTH} characters")
    slot = dialogue_reserve_existing(dialogue_id=dialogue.pk, reserve=1, owes_work=False)
    if slot is None:
        raise NotFound("Not found.")
    doc = {
        **message_document(
            dialogue_id=dialogue.pk,
            chat_bot_id=dialogue.chat_bot_id,
            channel_id=dialogue.channel_id,
            message_id=f"note-{uuid.uuid4()}",
            role=Message.Role.NOTE.value,
            text=text,
            created_at=timezone.now(),
            seq=slot.first_seq,
        ),
        "author_id": getattr(author, "pk", None),
        "author_username": author.get_username() or None,
    }
    if not message_insert(doc):
        dialogue_count_adjust(dialogue_id=dialogue.pk, added=-1, voids=[slot.first_seq] if slot.first_seq else None)
        raise ApplicationError("The note could not be stored; try again", status=409)
    return Message.objects.get(pk=doc["_id"])
