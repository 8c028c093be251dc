"""How a message's files reach the LLM. Free of Django: the mock (and so the benchmark's
floors) reads a history the same way.

A model that accepts images (the bot's `vision`) is sent the images it can read as OpenAI
`image_url` parts, by their URL: its provider fetches them. Every other file, and every image
for a model without vision, becomes one line of text after the message, so that the model knows
a file came and can say that it cannot open it."""

from __future__ import annotations

from llm.types import HistoryAttachment, HistoryItem

# The formats OpenAI's chat completions accept as images (and most servers that copy it). Other
# image types (svg, tiff, heic, ...) are refused by the provider with a 400, which would cost the
# customer the reply: they are described in words instead, like any file.
VISION_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
_SENDERS = {"USER": "The customer", "EMPLOYEE": "The employee"}
_UNITS = ("KB", "MB", "GB")


def is_vision_image(file: HistoryAttachment) -> bool:
    return (file.get("mime_type") or "").lower() in VISION_IMAGE_TYPES


def human_size(size: int | None) -> str:
    """1023 bytes, 1.0 KB, 2.4 MB: powers of 1024, as file managers show them."""
    if size is None:
        return "unknown size"
    if size < 1024:
        return "1 byte" if size == 1 else f"{size} bytes"
    value = float(size)
    for unit in _UNITS:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def file_line(file: HistoryAttachment, *, role: str) -> str:
    """`[The customer sent a file: name (type, size)]`."""
    sender = _SENDERS.get(role, "The customer")
    name = file.get("name") or "unnamed file"
    kind = file.get("mime_type") or "unknown type"
    return f"[{sender} sent a file: {name} ({kind}, {human_size(file.get('size'))})]"


def item_images(item: HistoryItem, *, vision: bool) -> list[str]:
    """The URLs the model is shown as images: none without vision."""
    if not vision:
        return []
    return [file["url"] for file in item.get("attachments", []) if is_vision_image(file)]


def item_text(item: HistoryItem, *, vision: bool) -> str:
    """The message's text, then a line for each file the model is not shown as an image. Exactly
    `item["text"]` for a message without files."""
    lines = [
        file_line(file, role=item["role"])
        for file in item.get("attachments", [])
        if not (vision and is_vision_image(file))
    ]
    return "\n".join([item["text"], *lines] if item["text"] else lines)
