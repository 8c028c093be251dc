"""Outbound HTTP to channels: the one place that POSTs to a channel's URL.

One call is one attempt (`channel_attempt`). Retrying belongs to the worker, so an attempt
never raises for a network or HTTP problem: it returns an `AttemptOutcome` that says whether
a retry could help (`permanent`) and what the channel asked for (`retry_after_s`).

Each attempt has one deadline for all of it, and of the answer's body at most 64 KiB is read;
the deadline's mechanics (clock, watchdog, guarded pools) are `channels_app.outgoing_http`'s.
This module holds the rules: headers, signatures, payloads, and which answer is final.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
from django.conf import settings
from standardwebhooks import Webhook

from channels_app.models import Channel
from channels_app.outgoing_http import (
    AttemptClock,
    PrivateAddressRefused,
    clocked,
    http_session,
    private_url_refused_cached,
    retry_after_s,
)
from channels_app.services import channel_signing_secrets, validate_channel_url
from core.errors import ApplicationError

logger = logging.getLogger(__name__)

TEST_MESSAGE_TEXT = "Test message from the chat-bot platform"
USER_AGENT = "chatbot-platform/1.0"
# Of a channel's answer only the status and headers matter; the body is read (so that the
# connection can be reused) up to this much, and the connection is dropped if there is more.
MAX_BODY_BYTES = 64 * 1024
_READ_CHUNK_BYTES = 16 * 1024
ERROR_MAX_LENGTH = 500
# A typing event's whole deadline (at most CHANNEL_ATTEMPT_TIMEOUT_S).
TYPING_DEADLINE_S = 2.0
NON_PUBLIC = "a non-public (loopback, private, link-local or reserved) address"


class TransportError(Exception):
    """A failed attempt, as `channel_attempt` reports it."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        status_code: int | None = None,
        retry_after_s: float | None = None,
    ):
        super().__init__(message)
        self.message = message[:ERROR_MAX_LENGTH]
        self.permanent = permanent
        self.status_code = status_code
        self.retry_after_s = retry_after_s


@dataclass
class AttemptOutcome:
    ok: bool  # the channel answered 2xx
    status_code: int | None
    # Short, safe to store and show: built from status codes, exception type names and the
    # operating system's error texts, never from the token, the payload or the URL.
    error: str
    # No retry can fix it: a 4xx other than 408/429, a 3xx, a refused address, an invalid URL.
    permanent: bool
    # The channel's Retry-After, on 429 and 503 only.
    retry_after_s: float | None
    elapsed_ms: float


# --- Signatures (Standard Webhooks) ------------------------------------------------------------


def signature_headers(*, msg_id: str, body: bytes, secrets: Sequence[str], at: float | None = None) -> dict[str, str]:
    """`webhook-timestamp` and `webhook-signature` for these exact body bytes: one `v1,<sig>`
    per secret, space-separated (the spec's way to carry several during a key rotation).
    The timestamp is the attempt's own, so receivers' 5-minute replay window holds for retries
    too; `webhook-id` (the reply's id) stays the same across them."""
    timestamp = datetime.fromtimestamp(int(at if at is not None else time.time()), UTC)
    data = body.decode("utf-8")
    signature = " ".join(Webhook(secret).sign(msg_id=msg_id, timestamp=timestamp, data=data) for secret in secrets)
    return {"webhook-timestamp": str(int(timestamp.timestamp())), "webhook-signature": signature}


def _encode_body(payload: dict[str, Any]) -> bytes:
    body = json.dumps(payload, ensure_ascii=False)
    try:
        return body.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (from a "\ud800" escape somewhere upstream) is not UTF-8: sent as a
        # JSON escape instead, the body stays valid UTF-8, which signatures are computed over.
        return json.dumps(payload, ensure_ascii=True).encode("ascii")


# --- One attempt -------------------------------------------------------------------------


def channel_send(
    *,
    channel: Channel,
    payload: dict[str, Any],
    idempotency_key: str,
    log_context: dict[str, Any],
    extra_headers: dict[str, str] | None = None,
) -> AttemptOutcome:
    """One attempt to deliver `payload` to the channel, the way its kind delivers
    (`channels_app.kinds`): for the webhook kind a POST to its URL (`webhook_send`)."""
    from channels_app.kinds import kind_get

    return kind_get(channel.kind).send(
        channel=channel,
        payload=payload,
        idempotency_key=idempotency_key,
        log_context=log_context,
        extra_headers=extra_headers,
    )


def webhook_send(
    *,
    channel: Channel,
    payload: dict[str, Any],
    idempotency_key: str,
    log_context: dict[str, Any],
    extra_headers: dict[str, str] | None = None,
) -> AttemptOutcome:
    """One attempt to the channel's URL, with its token and signed with its current secrets."""
    return channel_attempt(
        url=channel.settings.url,
        token=channel.settings.token,
        payload=payload,
        idempotency_key=idempotency_key,
        signing_secrets=channel_signing_secrets(channel=channel),
        extra_headers=extra_headers,
        log_context=log_context,
    )


def channel_attempt(
    *,
    url: str,
    token: str,
    payload: dict[str, Any],
    idempotency_key: str,
    extra_headers: dict[str, str] | None = None,
    deadline_s: float | None = None,
    log_context: dict[str, Any] | None = None,
    signing_secrets: Sequence[str] | None = None,
    log_event: str = "delivery attempt",
) -> AttemptOutcome:
    """POSTs `payload` to a channel once, within `deadline_s` (CHANNEL_ATTEMPT_TIMEOUT_S).
    `idempotency_key` is sent as `webhook-id` (Standard Webhooks): the same on every retry of
    the same reply, so the channel can drop repeats. With `signing_secrets`
    (`channels_app.services.channel_signing_secrets`), the body is signed with each of them.
    `log_context` holds ids for the log line (never a secret)."""
    if deadline_s is None:
        deadline_s = settings.CHANNEL_ATTEMPT_TIMEOUT_S
    started = time.monotonic()
    headers = {
        settings.CHANNEL_AUTH_HEADER: f"Bearer {token}",
        "Content-Type": "application/json",
        "Accept": "application/json",
        # The answer's body is read only to be discarded: no reason to have it compressed.
        "Accept-Encoding": "identity",
        "User-Agent": USER_AGENT,
        "webhook-id": idempotency_key,
        **(extra_headers or {}),
    }
    body = _encode_body(payload)
    if signing_secrets:
        # After the caller's headers: a signature is ours to make, never overridden.
        headers.update(signature_headers(msg_id=idempotency_key, body=body, secrets=signing_secrets))
    clock = AttemptClock(started + deadline_s)
    status: int | None = None
    try:
        status = _post(url=url, headers=headers, body=body, clock=clock, deadline_s=deadline_s)
        error, permanent, retry_after = "", False, None
    except TransportError as exc:
        status, error, permanent, retry_after = exc.status_code, exc.message, exc.permanent, exc.retry_after_s
    finally:
        clock.finish()
    outcome = AttemptOutcome(
        ok=not error,
        status_code=status,
        error=error,
        permanent=permanent,
        retry_after_s=retry_after,
        elapsed_ms=round((time.monotonic() - started) * 1000, 1),
    )
    logger.log(
        logging.INFO if outcome.ok else logging.WARNING,
        log_event,
        extra={
            **(log_context or {}),
            "ok": outcome.ok,
            "status_code": outcome.status_code,
            "latency_ms": outcome.elapsed_ms,
            "error": outcome.error,
            "permanent": outcome.permanent,
            "retry_after_s": outcome.retry_after_s,
        },
    )
    return outcome


def _post(*, url: str, headers: dict[str, str], body: bytes, clock: AttemptClock, deadline_s: float) -> int:
    """One POST within the clock's deadline. Returns the 2xx status or raises TransportError."""
    try:
        validate_channel_url(url)
    except ApplicationError as exc:
        raise TransportError(f"Invalid URL: {exc.message}", permanent=True) from None
    if private_url_refused_cached(url):
        raise TransportError(f"Refused: the channel URL points to {NON_PUBLIC}", permanent=True)
    remaining = clock.deadline - time.monotonic()
    if remaining <= 0:  # the resolver took it all
        raise TransportError(f"Timed out after {deadline_s:g} s")
    with clocked(clock):
        return _exchange(url=url, headers=headers, body=body, clock=clock, remaining=remaining, deadline_s=deadline_s)


def _exchange(
    *, url: str, headers: dict[str, str], body: bytes, clock: AttemptClock, remaining: float, deadline_s: float
) -> int:
    # Per-operation timeouts as well, so that nothing waits on the watchdog when it need not.
    timeout = (min(settings.CHANNEL_CONNECT_TIMEOUT_S, remaining), remaining)
    try:
        response = http_session().post(
            url, data=body, headers=headers, timeout=timeout, allow_redirects=False, stream=True
        )
    except PrivateAddressRefused as exc:
        raise TransportError(
            f"Refused: the channel's host resolved to {NON_PUBLIC} {exc.address}", permanent=True
        ) from None
    except Exception as exc:  # every failure becomes an outcome
        raise _request_error(exc, clock=clock, connect_s=timeout[0], deadline_s=deadline_s) from None

    status = response.status_code
    read_error: TransportError | None = None
    try:
        _read_bounded(response)
    except Exception as exc:
        read_error = _request_error(exc, clock=clock, connect_s=timeout[0], deadline_s=deadline_s)
    finally:
        # A body read to its end has already gone back to the pool (urllib3 releases it at the
        # end); anything else is closed here, never pooled half-read.
        response.close()

    if 200 <= status < 300:
        if read_error is not None:
            read_error.status_code = status
            raise read_error
        if clock.expired:
            raise TransportError(f"Timed out after {deadline_s:g} s", status_code=status)
        return status
    # The channel has answered; the status says what to do, whatever happened to the body.
    if 300 <= status < 400:
        raise TransportError(
            f"Received status code {status} (redirects are not followed)", permanent=True, status_code=status
        )
    if status in (408, 429) or status >= 500:
        retry_after = retry_after_s(response.headers) if status in (429, 503) else None
        raise TransportError(f"Received status code {status}", status_code=status, retry_after_s=retry_after)
    raise TransportError(f"Received status code {status}", permanent=True, status_code=status)


def _read_bounded(response: requests.Response) -> bool:
    """Reads the body, streamed, up to MAX_BODY_BYTES. True when it ended within that."""
    received = 0
    while received <= MAX_BODY_BYTES:
        chunk = response.raw.read(min(_READ_CHUNK_BYTES, MAX_BODY_BYTES + 1 - received), decode_content=False)
        if not chunk:
            return True
        received += len(chunk)
    return False


_INVALID_REQUEST = (
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidHeader,
    requests.exceptions.URLRequired,
    UnicodeError,
)


def _request_error(exc: Exception, *, clock: AttemptClock, connect_s: float, deadline_s: float) -> TransportError:
    if clock.expired or isinstance(exc, requests.exceptions.ReadTimeout):
        return TransportError(f"Timed out after {deadline_s:g} s")
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return TransportError(f"Connection timed out after {connect_s:g} s")
    if isinstance(exc, _INVALID_REQUEST):
        # Never the exception's text: InvalidHeader's quotes the header's value (the token).
        return TransportError(f"Invalid request: {type(exc).__name__}", permanent=True)
    if not isinstance(exc, requests.exceptions.RequestException | OSError):
        logger.warning("delivery attempt failed unexpectedly: %s", type(exc).__name__)
    return TransportError(f"Connection failed: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    """The operating system's words for what went wrong ("connection refused"), else the name
    of the innermost exception: never an exception's own text, which may quote the request."""
    seen: set[int] = set()
    level: list[BaseException] = [exc]
    innermost = exc
    # Breadth first through what each exception wraps (requests wraps urllib3's, which wrap
    # the socket's), so the last level reached is the innermost.
    while level:
        below: list[BaseException] = []
        for current in level:
            if id(current) in seen:
                continue
            seen.add(id(current))
            if isinstance(current, OSError) and current.strerror:
                return current.strerror[:1].lower() + current.strerror[1:]
            innermost = current
            nested = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
            below.extend(item for item in nested if isinstance(item, BaseException))
        level = below
    return type(innermost).__name__


# --- A native kind's call to its service's API ------------------------------------------


@dataclass
class ProviderAnswer:
    """A service's answer to one API call (Telegram's Bot API, VK's API). `error` is "" when an
    answer was read (whatever its status: the kind's rules read `status_code` and `data`), else
    why none was (a timeout, a refused connection), in words safe to store and show."""

    status_code: int | None
    data: Any  # the answer's JSON, or None when it was not JSON
    error: str
    # A connection that failed or timed out can be retried; an invalid URL cannot.
    permanent: bool
    retry_after_s: float | None
    elapsed_ms: float


def provider_call(
    *,
    url: str,
    json_body: dict[str, Any] | None = None,
    form: dict[str, str] | None = None,
    deadline_s: float | None = None,
    log_context: dict[str, Any] | None = None,
    log_event: str = "provider call",
) -> ProviderAnswer:
    """One POST of `json_body` (or of `form`, urlencoded) to a service's API under the same
    mechanics as a delivery attempt: one deadline for all of it, the address rules, the
    answer's body read up to MAX_BODY_BYTES. The URL holds the credential in some APIs
    (Telegram's `/bot<token>/`): it is never logged nor put in `error`."""
    if deadline_s is None:
        deadline_s = settings.CHANNEL_ATTEMPT_TIMEOUT_S
    started = time.monotonic()
    clock = AttemptClock(started + deadline_s)
    status: int | None = None
    data: Any = None
    error, permanent, retry_after = "", False, None
    try:
        status, data, retry_after = _provider_post(
            url=url, json_body=json_body, form=form, clock=clock, deadline_s=deadline_s
        )
    except TransportError as exc:
        status, error, permanent = exc.status_code, exc.message, exc.permanent
    finally:
        clock.finish()
    answer = ProviderAnswer(
        status_code=status,
        data=data,
        error=error,
        permanent=permanent,
        retry_after_s=retry_after,
        elapsed_ms=round((time.monotonic() - started) * 1000, 1),
    )
    logger.log(
        logging.INFO if not error else logging.WARNING,
        log_event,
        extra={**(log_context or {}), "status_code": status, "latency_ms": answer.elapsed_ms, "error": error},
    )
    return answer


def _provider_post(
    *,
    url: str,
    json_body: dict[str, Any] | None,
    form: dict[str, str] | None,
    clock: AttemptClock,
    deadline_s: float,
) -> tuple[int, Any, float | None]:
    try:
        validate_channel_url(url)
    except ApplicationError:
        raise TransportError("Invalid API URL", permanent=True) from None
    if private_url_refused_cached(url):
        raise TransportError(f"Refused: the API URL points to {NON_PUBLIC}", permanent=True)
    remaining = clock.deadline - time.monotonic()
    if remaining <= 0:
        raise TransportError(f"Timed out after {deadline_s:g} s")
    timeout = (min(settings.CHANNEL_CONNECT_TIMEOUT_S, remaining), remaining)
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json", "Accept-Encoding": "identity"}
    with clocked(clock):
        try:
            if json_body is not None:
                headers["Content-Type"] = "application/json"
                body: bytes | dict[str, str] = _encode_body(json_body)
            else:
                body = form or {}
            response = http_session().post(
                url, data=body, headers=headers, timeout=timeout, allow_redirects=False, stream=True
            )
        except PrivateAddressRefused as exc:
            raise TransportError(
                f"Refused: the API's host resolved to {NON_PUBLIC} {exc.address}", permanent=True
            ) from None
        except Exception as exc:
            raise _request_error(exc, clock=clock, connect_s=timeout[0], deadline_s=deadline_s) from None
        try:
            raw = _read_capped(response)
        except Exception as exc:
            raise _request_error(exc, clock=clock, connect_s=timeout[0], deadline_s=deadline_s) from None
        finally:
            response.close()
    if clock.expired:
        raise TransportError(f"Timed out after {deadline_s:g} s", status_code=response.status_code)
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        data = None
    retry_after = retry_after_s(response.headers) if response.status_code in (429, 503) else None
    return response.status_code, data, retry_after


def _read_capped(response: requests.Response) -> bytes:
    chunks: list[bytes] = []
    received = 0
    while received <= MAX_BODY_BYTES:
        chunk = response.raw.read(min(_READ_CHUNK_BYTES, MAX_BODY_BYTES + 1 - received), decode_content=False)
        if not chunk:
            break
        chunks.append(chunk)
        received += len(chunk)
    return b"".join(chunks)[:MAX_BODY_BYTES]


def answer_outcome(
    answer: ProviderAnswer, *, ok: bool, error: str = "", permanent: bool = False, retry_after_s: float | None = None
) -> AttemptOutcome:
    """A provider's answer as a delivery attempt's outcome, by the kind's reading of it."""
    if answer.error:
        return AttemptOutcome(
            ok=False,
            status_code=answer.status_code,
            error=answer.error,
            permanent=answer.permanent,
            retry_after_s=None,
            elapsed_ms=answer.elapsed_ms,
        )
    return AttemptOutcome(
        ok=ok,
        status_code=answer.status_code,
        error="" if ok else error[:ERROR_MAX_LENGTH],
        permanent=False if ok else permanent,
        retry_after_s=retry_after_s,
        elapsed_ms=answer.elapsed_ms,
    )


# --- Payloads ----------------------------------------------------------------------------


def reply_payload(*, message_id: str, text: str, chat_id: str, in_reply_to: str | None) -> dict[str, Any]:
    """The body channels receive. Field names are the existing contract; `type` tells a message
    from a typing event (`typing_payload`), for channels that take both on one URL."""
    return {
        "type": "message",
        "message_id": message_id,
        "role": "ASSISTANT",
        "text": text,
        "chat_id": chat_id,
        "in_reply_to": in_reply_to,
    }


TYPING_STATES = ("on", "off")


def typing_payload(*, chat_id: str, state: str) -> dict[str, Any]:
    """A typing event: the bot started writing a reply to this chat (`on`), or will not send
    one after all (`off`)."""
    if state not in TYPING_STATES:
        raise ValueError(f"typing state must be one of {TYPING_STATES}")
    return {"type": "typing", "chat_id": chat_id, "state": state}


def channel_typing_send(
    *, channel: Channel, chat_id: str, state: str, log_context: dict[str, Any]
) -> AttemptOutcome | None:
    """One typing event, the way the channel's kind sends one; None when its kind has none."""
    from channels_app.kinds import kind_get

    return kind_get(channel.kind).typing_send(channel=channel, chat_id=chat_id, state=state, log_context=log_context)


def webhook_typing_send(*, channel: Channel, chat_id: str, state: str, log_context: dict[str, Any]) -> AttemptOutcome:
    """One typing event to the channel, signed and authenticated as replies are, under an id of
    its own (`typing-<uuid4>`: an event is never repeated, so the id only tells events apart).
    Its deadline is short: a typing event late by seconds is worse than none. The caller decides
    what a failure means (for typing: nothing, no breaker, no retry)."""
    return channel_attempt(
        url=channel.settings.url,
        token=channel.settings.token,
        payload=typing_payload(chat_id=chat_id, state=state),
        idempotency_key=f"typing-{uuid.uuid4()}",
        signing_secrets=channel_signing_secrets(channel=channel),
        deadline_s=min(TYPING_DEADLINE_S, settings.CHANNEL_ATTEMPT_TIMEOUT_S),
        log_context={**log_context, "state": state},
        log_event="typing event",
    )


def test_payload(*, channel_id: str) -> dict[str, Any]:
    """The operator's "send test message" body: a reply, clearly marked as a test."""
    payload = reply_payload(
        message_id=f"test-{uuid.uuid4()}", text=TEST_MESSAGE_TEXT, chat_id=channel_id, in_reply_to=None
    )
    payload["test"] = True
    return payload


test_payload.__test__ = False  # type: ignore[attr-defined]  # not a pytest test, whatever its name
