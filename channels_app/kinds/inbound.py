"""What every kind's inbound endpoint does with a request's body before it reads its meaning:
at most `max_bytes` (413 beyond), whatever the `Content-Length` says or without one (chunked),
and a JSON object (400 otherwise)."""

from __future__ import annotations

import json
from typing import Any

from rest_framework import status
from rest_framework.request import Request

from core.errors import ApplicationError


class PayloadTooLarge(ApplicationError):
    status = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE


def body_bounded(request: Request, *, max_bytes: int) -> bytes:
    django_request = request._request
    meta = django_request.META
    try:
        declared = int(meta.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise ApplicationError("Invalid Content-Length header") from None
    too_large = PayloadTooLarge(f"Request body must be at most {max_bytes} bytes")
    if declared > max_bytes:
        raise too_large
    try:
        if not meta.get("CONTENT_LENGTH") and "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower():
            # No Content-Length: Django's stream reads nothing; the WSGI server's decodes chunks.
            body = _stream_read(meta.get("wsgi.input"), max_bytes + 1)
        else:
            # One byte past the limit, whatever the header said.
            body = bytes(django_request.read(max_bytes + 1))
    except Exception:
        raise ApplicationError("Malformed request body") from None
    if len(body) > max_bytes:
        raise too_large
    return body


def _stream_read(stream: Any, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while stream is not None and size < limit:
        chunk = stream.read(min(64 * 1024, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def json_object(body: bytes, *, what: str = "a JSON object") -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApplicationError("Malformed JSON in request body") from None
    if not isinstance(data, dict):
        raise ApplicationError(f"Request body must be {what}")
    return data
