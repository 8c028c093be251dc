"""Reading a Callback API event: which message (if any) it is in our terms.

VK's events (https://dev.vk.com/ru/api/community-events/json-schema) are
`{"type", "object", "group_id", "event_id", "v", "secret"}`. With API version 5.103 and later a
`message_new`'s object is `{"message": <message>, "client_info": {...}}`; a `message_reply` (a
message the community sent: by an operator in VK's own interface, or by us through
messages.send) carries the message object itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from channels_app.kinds.base import SENDER_CUSTOMER, SENDER_EMPLOYEE

# VK's messages are at most 4,096 characters; this bounds what a forged-but-authenticated event
# could make us store (the webhook's own bound).
TEXT_MAX_LENGTH = 32 * 1024


@dataclass(frozen=True)
class EventMessage:
    chat_id: str
    text: str
    message_id: str
    sender: str


def _int(value: Any) -> int | None:
    # bool is an int in Python, never an id in VK's JSON.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def message_id_of(*, group_id: int, message: dict[str, Any]) -> str | None:
    """The same for every resend of one message, whatever its event_id: VK's message id in the
    community's dialogues, or, for a message that has none (id 0: a chat the community is a
    member of), its id within the conversation."""
    vk_id = _int(message.get("id"))
    if vk_id:
        return f"vk-{group_id}-{vk_id}"
    peer_id = _int(message.get("peer_id"))
    conversation_id = _int(message.get("conversation_message_id"))
    if peer_id and conversation_id:
        return f"vk-{group_id}-{peer_id}-c{conversation_id}"
    return None


def event_message(event: dict[str, Any], *, group_id: int) -> EventMessage | None:
    """The message to store for this event, or None: an event of another type, the community's
    own message, a message without text (stickers, photos alone) or one we cannot identify."""
    kind = event.get("type")
    body = event.get("object")
    if not isinstance(body, dict):
        return None
    if kind == "message_new":
        # Before API version 5.103 the object was the message itself.
        message = body.get("message") if "message" in body else body
        sender = SENDER_CUSTOMER
    elif kind == "message_reply":
        message = body
        sender = SENDER_EMPLOYEE
    else:
        return None
    if not isinstance(message, dict):
        return None
    from_id = _int(message.get("from_id"))
    peer_id = _int(message.get("peer_id"))
    text = message.get("text")
    if from_id is None or not peer_id or not isinstance(text, str) or not text.strip():
        return None
    if sender == SENDER_CUSTOMER and (from_id < 0 or from_id == -group_id):
        # The community's own message (or another community's bot): never answered.
        return None
    if sender == SENDER_EMPLOYEE and not _operator_wrote(message, from_id=from_id):
        # What we sent through messages.send comes back as message_reply: acknowledged only.
        return None
    message_id = message_id_of(group_id=group_id, message=message)
    if message_id is None:
        return None
    return EventMessage(chat_id=str(peer_id), text=text[:TEXT_MAX_LENGTH], message_id=message_id, sender=sender)


def _operator_wrote(message: dict[str, Any], *, from_id: int) -> bool:
    """A community message a person wrote in VK: VK names the administrator who sent it in
    `admin_author_id`; messages sent with the community's key through the API (our replies)
    carry none."""
    admin = _int(message.get("admin_author_id"))
    return (admin is not None and admin > 0) or from_id > 0
