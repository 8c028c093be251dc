"""Reading a Telegram Update (https://core.telegram.org/bots/api#update) into what we store.

What is stored and what is only acknowledged (answered 200 so Telegram stops resending):
- `message` with `text`: stored as the customer's message.
- `message` with a photo, sticker, voice... : stored with a placeholder naming it ("[photo]",
  followed by the caption when there is one), so the dialogue shows the customer wrote
  something; the file itself is not fetched.
- `message` from a bot (`from.is_bot`), a service message (someone joined, a pinned message),
  `edited_message` and every other kind of update: acknowledged, nothing stored. An edit is not
  a new question: answering it again would send a second reply to one message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Content a message may carry instead of text, in the order they are looked for.
NON_TEXT_CONTENT = (
    "photo",
    "sticker",
    "animation",
    "video",
    "video_note",
    "voice",
    "audio",
    "document",
    "location",
    "venue",
    "contact",
    "poll",
    "dice",
    "game",
    "invoice",
    "story",
)


class UpdateInvalid(ValueError):
    """Not an Update: no integer `update_id`, or a `message` without its chat."""


@dataclass
class UpdateRead:
    update_id: int
    # None: acknowledged only; why, for the log and the answer.
    chat_id: str | None = None
    text: str = ""
    ignored: str = ""


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def update_read(update: dict[str, Any]) -> UpdateRead:
    update_id = update.get("update_id")
    if not _integer(update_id):
        raise UpdateInvalid("update_id must be an integer")
    assert isinstance(update_id, int)
    if "edited_message" in update:
        return UpdateRead(update_id, ignored="edited_message")
    message = update.get("message")
    if message is None:
        return UpdateRead(update_id, ignored="update_type")
    if not isinstance(message, dict):
        raise UpdateInvalid("message must be an object")
    chat = message.get("chat")
    if not isinstance(chat, dict) or not _integer(chat.get("id")):
        raise UpdateInvalid("message.chat.id must be an integer")
    sender = message.get("from")
    if isinstance(sender, dict) and sender.get("is_bot") is True:
        return UpdateRead(update_id, ignored="from_bot")
    chat_id = str(chat["id"])
    text = message.get("text")
    if isinstance(text, str) and text.strip():
        return UpdateRead(update_id, chat_id=chat_id, text=text)
    for content in NON_TEXT_CONTENT:
        if content in message:
            caption = message.get("caption")
            placeholder = f"[{content}]"
            if isinstance(caption, str) and caption.strip():
                placeholder = f"{placeholder} {caption}"
            return UpdateRead(update_id, chat_id=chat_id, text=placeholder)
    return UpdateRead(update_id, ignored="service_message")


def update_message_id(update_id: int) -> str:
    """Our message id for an update: the same for every resend of it, so the ingest's unique
    index drops a repeat."""
    return f"tg-{update_id}"
