"""Reading a webhook request: the bot's secret from its header, the raw body (bounded, read
once: a signature is verified over exactly these bytes), strict JSON."""

from __future__ import annotations

import json
from typing import Any

from rest_framework import status
from rest_framework.request import Request

from core.errors import ApplicationError
from dialogues.webhook.serializers import BODY_MAX_BYTES

AUTH_HEADER_REQUIRED = "x-chatbot_auth_token header is required"
AUTH_HEADER_INVALID = "Invalid authorization header format, expected 'Bearer <token>'"
AUTH_TOKEN_INVALID = "Invalid token"  # noqa: S105 - a message, not a secret


class Unauthorized(ApplicationError):
    status = status.HTTP_401_UNAUTHORIZED


class PayloadTooLarge(ApplicationError):
    status = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE


MALFORMED_BODY = "Malformed request body: it could not be read as sent (Transfer-Encoding or Content-Length)"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def request_secret(request: Request) -> str:
    """The bot secret from `x-chatbot_auth_token` (the existing channels' header; WSGI maps it
    and `X-Chatbot-Auth-Token` to the same key), else from `Authorization`."""
    meta = request._request.META
    raw = meta.get("HTTP_X_CHATBOT_AUTH_TOKEN")
    if raw is None:
        raw = meta.get("HTTP_AUTHORIZATION")
    if raw is None:
        raise Unauthorized(AUTH_HEADER_REQUIRED)
    parts = raw.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        raise Unauthorized(AUTH_HEADER_INVALID)
    return parts[1]


def _read_body(django_request: Any, limit: int) -> bytes:
    meta = django_request.META
    try:
        if not meta.get("CONTENT_LENGTH") and "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower():
            # A chunked body has no Content-Length, so Django's request stream reads it as empty.
            # The WSGI server (gunicorn) decodes the chunks; read from it directly, bounded.
            stream = meta.get("wsgi.input")
            if stream is None:
                return b""
            chunks: list[bytes] = []
            size = 0
            while size < limit:
                chunk = stream.read(min(64 * 1024, limit - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            return b"".join(chunks)
        return bytes(django_request.read(limit))
    except Exception:
        # The server could not decode the body: a malformed chunk size or terminator, a body
        # shorter than announced, a client gone mid-body. gunicorn raises its own parse errors
        # (not OSError) from the stream; whatever the server, the body is unreadable: a 400.
        raise ApplicationError(MALFORMED_BODY) from None


def request_json_object(request: Request) -> dict[str, Any]:
    return json_object_parse(request_body(request))


def request_body(request: Request) -> bytes:
    """The raw body, exactly the bytes received (a signature is verified over them), bounded.
    Read once: a second call returns the same bytes."""
    cached = getattr(request, "_webhook_body", None)
    if cached is not None:
        return bytes(cached)
    django_request = request._request
    try:
        declared = int(django_request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise ApplicationError("Invalid Content-Length header") from None
    if declared > BODY_MAX_BYTES:
        raise PayloadTooLarge(f"Request body must be at most {BODY_MAX_BYTES} bytes")
    # Read at most one byte past the limit, whatever the header said.
    body = _read_body(django_request, BODY_MAX_BYTES + 1)
    if len(body) > BODY_MAX_BYTES:
        raise PayloadTooLarge(f"Request body must be at most {BODY_MAX_BYTES} bytes")
    request._webhook_body = body  # type: ignore[attr-defined]
    return body


def json_object_parse(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise ApplicationError("Request body is empty; a JSON object is required")
    try:
        payload = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApplicationError("Malformed JSON in request body") from None
    if not isinstance(payload, dict):
        raise ApplicationError("Request body must be a JSON object")
    return payload


def content_too_large(request: Request) -> bool:
    """A body declared over the limit is refused before the secret is even looked up."""
    try:
        return int(request._request.META.get("CONTENT_LENGTH") or 0) > BODY_MAX_BYTES
    except ValueError:
        return True
