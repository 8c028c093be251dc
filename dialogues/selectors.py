"""Reads of dialogues and their messages. Message history is keyset-paged on the model's
ordering (created_at, id), so a page costs the same in a dialogue of ten messages or of
a hundred thousand, and never loads the dialogue whole."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q, QuerySet

from channels_app.models import Channel
from dialogues.models import Dialogue, Message

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class MessagePage:
    """`messages` oldest first. `has_more`: more messages exist beyond the page in the
    direction of travel (older ones for the latest page and `before`, newer for `after`)."""

    messages: list[Message]
    has_more: bool


def dialogue_list(
    *, chat_bot_id: object | None = None, channel_id: object | None = None, chat_id: str | None = None
) -> QuerySet[Dialogue]:
    dialogues = Dialogue.objects.all()
    if chat_bot_id is not None:
        dialogues = dialogues.filter(chat_bot_id=chat_bot_id)
    if channel_id is not None:
        dialogues = dialogues.filter(channel_id=channel_id)
    if chat_id is not None:
        dialogues = dialogues.filter(chat_id=chat_id)
    return dialogues


def dialogue_for_channel(*, channel: Channel) -> Dialogue | None:
    """The channel's own dialogue: in the existing contract its chat_id is the channel id.
    Looked up on the unique (chat_bot, channel, chat_id) index."""
    return Dialogue.objects.filter(chat_bot_id=channel.chat_bot_id, channel=channel, chat_id=str(channel.pk)).first()


def message_by_message_id(*, dialogue: Dialogue, message_id: str) -> Message | None:
    # The unique (dialogue, message_id) index answers this.
    return Message.objects.filter(dialogue=dialogue, message_id=message_id).first()


def message_page(
    *,
    dialogue: Dialogue,
    before: Message | None = None,
    after: Message | None = None,
    limit: int = DEFAULT_PAGE_SIZE,
) -> MessagePage:
    """Without a cursor: the latest `limit` messages. `before`: the `limit` messages just
    older than that one; `after`: the `limit` just newer. Always returned oldest first."""
    if before is not None and after is not None:
        raise ValueError("before and after are exclusive")
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    messages = Message.objects.filter(dialogue=dialogue)
    # The range on created_at narrows the index scan; the Q settles ties on id. One more
    # than asked for tells whether anything lies beyond the page.
    if after is not None:
        messages = messages.filter(created_at__gte=after.created_at).filter(
            Q(created_at__gt=after.created_at) | Q(id__gt=after.pk)
        )
        rows = list(messages.order_by("created_at", "id")[: limit + 1])
        return MessagePage(messages=rows[:limit], has_more=len(rows) > limit)
    if before is not None:
        messages = messages.filter(created_at__lte=before.created_at).filter(
            Q(created_at__lt=before.created_at) | Q(id__lt=before.pk)
        )
    rows = list(messages.order_by("-created_at", "-id")[: limit + 1])
    page = rows[:limit]
    page.reverse()
    return MessagePage(messages=page, has_more=len(rows) > limit)
