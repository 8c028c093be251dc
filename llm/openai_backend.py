"""LLM_BACKEND="openai": a thin adapter over the official openai SDK, for OpenAI itself or any
server that speaks its chat-completions protocol (Ollama, vLLM, llama.cpp, ...).

Configuration: OPENAI_BASE_URL and OPENAI_API_KEY (the SDK's own variables, read by
`config.settings` and passed to the client explicitly, so that `.env` and settings overrides
are what the client uses, never a second reading of the environment), LLM_MODEL (a bot's
`llm_model` overrides it), LLM_TIMEOUT_S, LLM_MAX_TOKENS_FIELD.

Retries are the worker's (with backoff, honouring Retry-After), not the SDK's: max_retries=0.
The API key goes into the client and nowhere else: error texts are our own, and a server's
own error text is shown only after anything that looks like a key is cut out of it.

The conversation sent: the bot's system prompt (if any), then `history` oldest first. USER is
`user`, ASSISTANT is `assistant`. EMPLOYEE (a human colleague who wrote to the customer) is
`user` with the name "employee" and a prefix saying who spoke: as `assistant` the model would
take a human's words for its own (and imitate them); as a plain `user` it would take them for
the customer's. A `system` message in mid-conversation would say it too, but many
self-hosted chat templates accept a system message only first.

Files sent with a message (`llm.attachments`): for a bot with `vision`, its png, jpeg, gif and
webp images go as `image_url` parts of that message (`content` becomes a list of parts, its
text first); every other file, and every image for a bot without, is a line of text after the
message's text: `[The customer sent a file: name (type, size)]`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx2
import openai
from cachetools import LRUCache
from django.conf import settings
from openai.types.chat import ChatCompletion

from channels_app.outgoing_http import retry_after_s
from chatbots.models import ChatBot
from llm.attachments import item_images, item_text
from llm.providers import ProviderTarget
from llm.types import HistoryItem, LLMError, LLMReply, rate_headers

logger = logging.getLogger("llm")

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
EMPLOYEE_NAME = "employee"
# Offered to the model of a bot with `handoff_tool`: calling it hands the chat to a human.
HANDOFF_TOOL_NAME = "handoff_to_human"
HANDOFF_TOOL = {
    "type": "function",
    "function": {
        "name": HANDOFF_TOOL_NAME,
        "description": (
            "Hand the conversation to a human operator: the customer asks for a person, or needs what only "
            "a human can do (a refund, a complaint, an account change), or you cannot help. The customer is "
            "told that an operator will answer."
        ),
        "parameters": {
            "type": "object",
            "properties": {"reason": {"type": "string", "description": "Why a human is needed, in a few words."}},
            "required": ["reason"],
        },
    },
}
HANDOFF_REASON_DEFAULT = "The model asked for a human"
EMPLOYEE_PREFIX = "[A human employee wrote to the customer] "
_ROLES = {"USER": "user", "ASSISTANT": "assistant", "SYSTEM": "system"}

# Anything shaped like an API key in a server's error text ("Incorrect API key provided:
# sk-proj-****abcd" shows the key's tail): cut out before the text is stored or shown.
_KEY_LIKE = re.compile(r"\b(?:sk|key|api[-_]?key)[-_][A-Za-z0-9_\-*.]{6,}", re.IGNORECASE)

CLIENTS_MAX = 256
_client_lock = threading.Lock()
_clients: LRUCache[tuple[str, str, float], openai.OpenAI] = LRUCache(maxsize=CLIENTS_MAX)


@dataclass(frozen=True)
class _Request:
    base_url: str
    api_key: str = field(repr=False)
    model: str
    body: dict[str, Any]


def _request(*, chat_bot: ChatBot | None, history: list[HistoryItem], provider: ProviderTarget | None) -> _Request:
    """Where the call goes and what it sends. With `provider`, its server and key; without,
    OPENAI_BASE_URL and OPENAI_API_KEY."""
    if provider is not None:
        base_url, api_key = provider.base_url, provider.api_key
    else:
        base_url = settings.OPENAI_BASE_URL or OPENAI_DEFAULT_BASE_URL
        api_key = settings.OPENAI_API_KEY
    if not api_key and provider is not None:
        raise LLMError(f"The LLM provider {provider.name!r} has no API key", retryable=False)
    if not api_key:
        raise LLMError(
            "OPENAI_API_KEY is not set (a server that needs no key, such as Ollama, accepts any value)",
            retryable=False,
        )
    model = (chat_bot.llm_model if chat_bot is not None else "") or settings.LLM_MODEL
    body: dict[str, Any] = {"model": model, "messages": chat_messages(chat_bot=chat_bot, history=history)}
    if chat_bot is not None and chat_bot.temperature is not None:
        body["temperature"] = chat_bot.temperature
    if chat_bot is not None and chat_bot.max_output_tokens:
        body[max_tokens_field(base_url)] = chat_bot.max_output_tokens
    if chat_bot is not None and chat_bot.handoff_tool:
        body["tools"] = [HANDOFF_TOOL]
    return _Request(base_url=base_url, api_key=api_key, model=model, body=body)


def _create_options(*, timeout_s: float, traceparent: str) -> dict[str, Any]:
    return {
        "timeout": max(0.05, timeout_s),
        # W3C Trace Context, so an LLM gateway or server that traces joins the reply's trace.
        # Never tracestate: its entries belong to the channel's vendors, not to the LLM's.
        "extra_headers": {"traceparent": traceparent} if traceparent else None,
    }


def openai_reply(
    *,
    chat_bot: ChatBot | None,
    history: list[HistoryItem],
    deadline: float,
    traceparent: str = "",
    provider: ProviderTarget | None = None,
) -> LLMReply:
    """One call with the synchronous client (the "Test connection" button, `deliver_pending`);
    the worker's calls go through `openai_reply_async`."""
    request = _request(chat_bot=chat_bot, history=history, provider=provider)
    client = _client(base_url=request.base_url, api_key=request.api_key, timeout_s=settings.LLM_TIMEOUT_S)
    started = time.monotonic()
    try:
        # What is left of the call's budget (the pool stops waiting at the deadline anyway).
        completion = client.chat.completions.create(
            **request.body, **_create_options(timeout_s=deadline - started, traceparent=traceparent)
        )
    except Exception as exc:  # noqa: BLE001 - mapped to our own words, or re-raised
        raise _failure(exc, request) from None
    return _reply(completion, request, started=started)


async def openai_reply_async(
    client: openai.AsyncOpenAI, request: _Request, *, timeout_s: float, traceparent: str = ""
) -> LLMReply:
    """One call with an asynchronous client (`llm.aio`, which keeps one per provider)."""
    started = time.monotonic()
    try:
        # The raw response, for its pacing headers (x-ratelimit-remaining-*, ...).
        raw = await client.chat.completions.with_raw_response.create(
            **request.body, **_create_options(timeout_s=timeout_s, traceparent=traceparent)
        )
        completion = raw.parse()
    except Exception as exc:  # noqa: BLE001 - mapped to our own words, or re-raised
        raise _failure(exc, request) from None
    reply = _reply(completion, request, started=started)
    reply.rate_headers = rate_headers(raw.headers)
    return reply


def openai_request(
    *, chat_bot: ChatBot | None, history: list[HistoryItem], provider: ProviderTarget | None = None
) -> _Request:
    """The call `openai_reply_async` makes (raises a final LLMError when it cannot be made)."""
    return _request(chat_bot=chat_bot, history=history, provider=provider)


def async_client(request: _Request, *, max_connections: int) -> openai.AsyncOpenAI:
    """A new asynchronous client for the request's server and key, with a connection pool as
    large as the calls the process may have in flight (the SDK's default stops at 1,000)."""
    # Kept alive as many as may be in flight: a thousand calls to one server reuse their connections.
    limits = httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    return openai.AsyncOpenAI(
        api_key=request.api_key,
        base_url=request.base_url,
        timeout=settings.LLM_TIMEOUT_S,
        max_retries=0,
        http_client=openai.DefaultAsyncHttpxClient(limits=limits, timeout=settings.LLM_TIMEOUT_S),
    )


def client_key(request: _Request) -> tuple[str, str]:
    """The cache key of a request's client: its server and a hash of its key (never the key)."""
    return request.base_url, hashlib.sha256(request.api_key.encode()).hexdigest()


def _failure(exc: Exception, request: _Request) -> LLMError:
    if isinstance(exc, LLMError):
        return exc
    if isinstance(exc, openai.APIError):
        return _error(exc, model=request.model, base_url=request.base_url, api_key=request.api_key)
    if isinstance(exc, json.JSONDecodeError):
        # A body that claims to be JSON (by its Content-Type) and is not.
        return LLMError("The LLM server sent malformed JSON")
    if isinstance(exc, openai.OpenAIError):
        return LLMError(
            f"The OpenAI client failed: {type(exc).__name__}: {_scrub(str(exc), request.api_key)}", retryable=False
        )
    raise exc


def _reply(completion: object, request: _Request, *, started: float) -> LLMReply:
    latency_ms = round((time.monotonic() - started) * 1000)
    if not isinstance(completion, ChatCompletion):
        # The SDK hands back the raw text when the Content-Type is not JSON.
        raise LLMError("The LLM server sent a non-JSON answer")
    handoff = _handoff_reason(completion)
    text = "" if handoff is not None else _completion_text(completion)
    usage = completion.usage
    model = request.model
    logger.debug(
        "llm reply",
        extra={"model": completion.model or model, "latency_ms": latency_ms, "usage": usage and usage.total_tokens},
    )
    return LLMReply(
        text=text,
        backend="openai",
        model=completion.model or model,
        prompt_tokens=_int_or_none(usage.prompt_tokens) if usage else None,
        completion_tokens=_int_or_none(usage.completion_tokens) if usage else None,
        latency_ms=latency_ms,
        handoff_reason=handoff,
    )


def _handoff_reason(completion: ChatCompletion) -> str | None:
    """The reason the model gave when it called `handoff_to_human`, or None when it did not."""
    choices = completion.choices or []
    message = choices[0].message if choices else None
    for call in (message.tool_calls if message is not None else None) or []:
        function = getattr(call, "function", None)
        if function is None or function.name != HANDOFF_TOOL_NAME:
            continue
        try:
            arguments = json.loads(function.arguments or "{}")
        except ValueError:
            arguments = {}
        reason = arguments.get("reason") if isinstance(arguments, dict) else None
        return str(reason).strip()[:500] if isinstance(reason, str) and reason.strip() else HANDOFF_REASON_DEFAULT
    return None


def chat_messages(*, chat_bot: ChatBot | None, history: list[HistoryItem]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    system_prompt = (chat_bot.system_prompt if chat_bot is not None else "").strip()
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    vision = bool(chat_bot is not None and chat_bot.vision)
    for item in history:
        text = item_text(item, vision=vision)
        message: dict[str, Any]
        if item["role"] == "EMPLOYEE":
            message = {"role": "user", "name": EMPLOYEE_NAME, "content": EMPLOYEE_PREFIX + text}
        else:
            message = {"role": _ROLES.get(item["role"], "user"), "content": text}
        images = item_images(item, vision=vision)
        if images:
            # The chat-completions form for images: a list of parts, the text first (left out
            # when there is none: a text part must not be empty on some servers).
            parts: list[dict[str, Any]] = [{"type": "text", "text": message["content"]}] if message["content"] else []
            parts += [{"type": "image_url", "image_url": {"url": url}} for url in images]
            message["content"] = parts
        messages.append(message)
    return messages


def max_tokens_field(base_url: str) -> str:
    field = settings.LLM_MAX_TOKENS_FIELD
    if field != "auto":
        return field
    host = urlsplit(base_url).hostname or ""
    return "max_completion_tokens" if host == "api.openai.com" else "max_tokens"


def _client(*, base_url: str, api_key: str, timeout_s: float) -> openai.OpenAI:
    """One client per provider (server and key) per process, created on first use (the SDK's
    client is thread-safe and keeps a connection pool). The least recently used is dropped
    past CLIENTS_MAX; calls still using it finish, and it closes when dropped."""
    key = (base_url, hashlib.sha256(api_key.encode()).hexdigest(), timeout_s)
    with _client_lock:
        client = _clients.get(key)
        if client is None:
            client = openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0)
            _clients[key] = client
        return client


def _completion_text(completion: ChatCompletion) -> str:
    choices = completion.choices or []
    if not choices:
        raise LLMError("The LLM returned no choices")
    message = choices[0].message
    content = message.content if message is not None else None
    if not isinstance(content, str) or not content.strip():
        reason = choices[0].finish_reason or "unknown"
        raise LLMError(f"The LLM returned an empty completion (finish_reason {reason})")
    return content


def _error(exc: openai.APIError, *, model: str, base_url: str, api_key: str) -> LLMError:
    """Our own words for each failure, with whether a retry can help. Order matters: the
    timeout is a connection error, and the status errors are API errors."""
    if isinstance(exc, openai.APITimeoutError):
        return LLMError(f"The LLM did not answer within {settings.LLM_TIMEOUT_S:g} s (LLM_TIMEOUT_S)")
    if isinstance(exc, openai.APIConnectionError):
        return LLMError(f"Cannot reach the LLM server at {_host(base_url)}")
    if isinstance(exc, openai.APIResponseValidationError):
        return LLMError(f"The LLM server sent a malformed answer ({exc.status_code})")
    if not isinstance(exc, openai.APIStatusError):
        return LLMError(f"The LLM call failed: {type(exc).__name__}")
    error = _status_error(exc, model=model, base_url=base_url, api_key=api_key)
    error.status = exc.status_code
    error.rate_headers = rate_headers(exc.response.headers)
    return error


def _status_error(exc: openai.APIStatusError, *, model: str, base_url: str, api_key: str) -> LLMError:
    status = exc.status_code
    detail = _server_detail(exc, api_key)
    # OpenAI sends its own retry-after-ms besides Retry-After.
    retry_after = retry_after_s(exc.response.headers, retry_after_ms=True)
    if status == 429:
        if exc.code == "insufficient_quota":
            text = "The LLM account is out of quota (429)"
        else:
            text = "The LLM server is rate-limiting us (429)"
        if retry_after is not None:
            text += f", retry after {retry_after:g} s"
        return LLMError(text, retry_after_s=retry_after)
    if status >= 500 or status in (408, 409):
        return LLMError(f"The LLM server failed ({status})", retry_after_s=retry_after)
    if status == 401:
        return LLMError("The LLM server refused the API key (401)", retryable=False)
    if status == 403:
        return LLMError(f"The LLM server denied access to model {model!r} (403)", retryable=False)
    if status == 404:
        return LLMError(f"Unknown model {model!r}, or a wrong OPENAI_BASE_URL (404)", retryable=False)
    return LLMError(f"The LLM server rejected the request ({status}){detail}", retryable=False)


def _server_detail(exc: openai.APIStatusError, api_key: str) -> str:
    body = exc.body
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, str) or not message.strip():
        return ""
    return ": " + _scrub(message, api_key)[:300]


def _scrub(text: str, api_key: str) -> str:
    if api_key:
        text = text.replace(api_key, "[key]")
    return _KEY_LIKE.sub("[key]", text)


def _host(base_url: str) -> str:
    # Host and port only: a URL may carry credentials (user:password@host) or a key in its query.
    parts = urlsplit(base_url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and value >= 0 else None
