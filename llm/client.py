"""The LLM interface. `llm_reply_generate(chat_bot=, history=)` answers in the caller's thread
(the bot page's "Try this bot", `worker.pipeline.dialogue_process`); the worker prepares its
calls with `llm_call_prepare` and awaits them on its event loop (`llm.aio`). Which
implementation answers is `settings.LLM_BACKEND`:

- "mock": deterministic, no network (the default; tests everywhere depend on its format);
- "openai": any server speaking OpenAI's chat-completions protocol (`llm.openai_backend`);
- the dotted path of your own callable `(history) -> str`.

That is the platform's default provider. A bot that names an `llm.LLMProvider`
(`llm_provider_id`) is answered by that provider's server with its key, through the "openai"
backend, whatever LLM_BACKEND is (`llm.providers`).

`history` is the dialogue's recent messages, oldest first, as
`[{"role": "USER" | "ASSISTANT" | "EMPLOYEE", "text": "..."}, ...]`; the last item is the
customer message being answered. A message that came with files also has `"attachments":
[{"url", "mime_type", "name", "size"}, ...]` (its `text` may then be ""); the key is absent
otherwise. A custom callable gets it as it is; `llm.attachments.item_text(item, vision=False)`
gives the text with a line per file, as a model without vision is sent it.

`traceparent` (W3C Trace Context, `core.tracing`; optional) is sent by the "openai" backend as
the request's `traceparent` header. A custom callable keeps its `(history) -> str` contract and
is not given it; like every backend, it runs with the caller's context, so its log lines carry
the trace id all the same.

Every call but the undelayed mock's runs in a thread of its own and is waited for at most
LLM_TIMEOUT_S, even when a backend ignores its own timeout. At most LLM_MAX_CONCURRENCY calls
are waited for at once; a call that times out gives its slot back at once and its late result
is dropped. Threads of calls that timed out but still run are bounded too: with
2 x LLM_MAX_CONCURRENCY threads alive, new calls are refused (retryably) until some finish.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from chatbots.models import ChatBot
from llm.mock import mock_llm_text
from llm.pacing import DEFAULT_PROVIDER, Limits
from llm.providers import llm_provider_for
from llm.types import HistoryItem, LLMError, LLMReply

__all__ = [
    "HistoryItem", "LLMError", "LLMReply", "PreparedCall", "llm_call_prepare", "llm_context_size", "llm_pool",
    "llm_reply_generate",
]  # fmt: skip


CustomBackend = Callable[[list[HistoryItem]], str]

# The old dotted paths of the mock keep selecting it (existing .env files and tests use them).
MOCK_BACKENDS = frozenset({"mock", "dialogues.llm.mock_llm_call", "llm.client.mock_llm_call"})


def mock_llm_call(history: list[HistoryItem]) -> str:
    """Deterministic stand-in: the same history always gives the same reply, and different
    histories give different replies, so tests can tell them apart."""
    delay_ms = settings.LLM_MOCK_DELAY_MS
    if delay_ms:
        time.sleep(delay_ms / 1000)
    return mock_llm_text(history)


def llm_context_size(chat_bot: ChatBot | None) -> int:
    """How many of the dialogue's latest messages the LLM sees."""
    if chat_bot is not None and chat_bot.context_messages:
        return int(chat_bot.context_messages)
    return int(settings.LLM_CONTEXT_MESSAGES)


def llm_reply_generate(*, chat_bot: ChatBot | None, history: list[HistoryItem], traceparent: str = "") -> LLMReply:
    """The reply to `history[-1]`, with the bot's settings (None: the platform's defaults).
    Raises LLMError; never anything else."""
    name = settings.LLM_BACKEND
    call: Callable[[float], LLMReply]
    provider = llm_provider_for(chat_bot)
    if provider is not None:
        # A bot that names a provider: that provider's server, whatever the default backend.
        from llm.openai_backend import openai_reply

        def call(deadline: float) -> LLMReply:
            return openai_reply(
                chat_bot=chat_bot, history=history, deadline=deadline, traceparent=traceparent, provider=provider
            )

    elif name in MOCK_BACKENDS:
        if not settings.LLM_MOCK_DELAY_MS:
            # No I/O and no wait: no thread hop either (it is every test's and the benchmark's LLM).
            return mock_reply(history, deadline=0.0)

        def call(deadline: float) -> LLMReply:
            return mock_reply(history, deadline=deadline)

    elif name == "openai":
        # Imported on first use: the SDK costs a noticeable start-up time the mock never needs.
        from llm.openai_backend import openai_reply

        def call(deadline: float) -> LLMReply:
            return openai_reply(chat_bot=chat_bot, history=history, deadline=deadline, traceparent=traceparent)

    else:
        backend = _custom_backend(name)

        def call(deadline: float) -> LLMReply:
            return custom_reply(backend, history)

    return _pool.run(call, limit=settings.LLM_MAX_CONCURRENCY, timeout_s=settings.LLM_TIMEOUT_S)


@dataclass(frozen=True)
class PreparedCall:
    """One call, decided in the caller's thread (the provider read, the request built) so that
    the event loop that waits for it (`llm.aio`) never touches the database. `kind`: "answered"
    (the undelayed mock: `reply` is the answer, no wait), "mock" (the mock with its delay),
    "openai" (`request`, to `provider`), or "custom" (`backend`)."""

    kind: str
    history: list[HistoryItem]
    traceparent: str = ""
    reply: LLMReply | None = None
    request: Any = None  # llm.openai_backend._Request (never in a repr: it holds the key)
    provider: str = DEFAULT_PROVIDER  # the pacing key (llm.pacing): the provider's id, or "default"
    provider_name: str = ""
    limits: Limits = Limits()
    backend: CustomBackend | None = None
    bot: str = ""
    tokens: int = 0  # an estimate of what the call costs: its prompt and its longest answer


def llm_call_prepare(*, chat_bot: ChatBot | None, history: list[HistoryItem], traceparent: str = "") -> PreparedCall:
    """What `llm_reply_generate` would do, made ready for an asynchronous wait. Raises a final
    LLMError when the call cannot be made (a provider gone, no key, an unknown backend)."""
    bot = str(chat_bot.pk) if chat_bot is not None and chat_bot.pk is not None else ""
    tokens = _tokens_estimate(chat_bot, history)
    name = settings.LLM_BACKEND
    provider = llm_provider_for(chat_bot)
    if provider is not None or name == "openai":
        from llm.openai_backend import openai_request

        request = openai_request(chat_bot=chat_bot, history=history, provider=provider)
        if provider is not None:
            limits = Limits(provider.max_concurrent, provider.requests_per_minute, provider.tokens_per_minute)
            return PreparedCall(
                kind="openai", history=history, traceparent=traceparent, request=request,
                provider=provider.key, provider_name=provider.name, limits=limits, bot=bot, tokens=tokens,
            )  # fmt: skip
        return PreparedCall(
            kind="openai", history=history, traceparent=traceparent, request=request, bot=bot, tokens=tokens
        )
    if name in MOCK_BACKENDS:
        if not settings.LLM_MOCK_DELAY_MS:
            return PreparedCall(kind="answered", history=history, reply=mock_reply(history, deadline=0.0), bot=bot)
        return PreparedCall(kind="mock", history=history, bot=bot, tokens=tokens)
    return PreparedCall(kind="custom", history=history, backend=_custom_backend(name), bot=bot, tokens=tokens)


# A rough count for pacing by tokens per minute, corrected by the answer's usage: about four
# characters a token, and the longest answer the bot allows (or this, when it sets none).
CHARS_PER_TOKEN = 4
ANSWER_TOKENS_DEFAULT = 256


def _tokens_estimate(chat_bot: ChatBot | None, history: list[HistoryItem]) -> int:
    prompt = sum(len(item["text"]) for item in history)
    if chat_bot is not None:
        prompt += len(chat_bot.system_prompt or "")
    answer = (chat_bot.max_output_tokens if chat_bot is not None else None) or ANSWER_TOKENS_DEFAULT
    return prompt // CHARS_PER_TOKEN + int(answer) + 1


def mock_reply(history: list[HistoryItem], *, deadline: float, delayed: bool = True) -> LLMReply:
    """The mock's answer; `delayed=False`: without its LLM_MOCK_DELAY_MS (a caller that waits
    it out itself, `llm.aio`)."""
    started = time.monotonic()
    text = mock_llm_call(history) if delayed else mock_llm_text(history)
    return LLMReply(
        text=text, backend="mock", model="", prompt_tokens=None, completion_tokens=None, latency_ms=_ms_since(started)
    )


_backends_lock = threading.Lock()
_backends: dict[str, CustomBackend] = {}


def _custom_backend(path: str) -> CustomBackend:
    backend = _backends.get(path)
    if backend is not None:
        return backend
    try:
        backend = import_string(path)
    except ImportError:
        # Configuration, not the LLM: retrying cannot fix it.
        raise LLMError(
            f"LLM_BACKEND {path!r} is neither 'mock', 'openai' nor an importable callable", retryable=False
        ) from None
    if not callable(backend):
        raise LLMError(f"LLM_BACKEND {path!r} is not callable", retryable=False)
    with _backends_lock:
        _backends[path] = backend
    return backend


def custom_reply(backend: CustomBackend, history: list[HistoryItem]) -> LLMReply:
    started = time.monotonic()
    try:
        text = backend(history)
    except LLMError:
        raise
    except Exception as exc:
        # The type only: a third-party message may carry anything, credentials included.
        raise LLMError(f"The LLM backend failed: {type(exc).__name__}") from exc
    if not isinstance(text, str) or not text.strip():
        raise LLMError("The LLM returned an empty or non-text reply")
    return LLMReply(
        text=text, backend="custom", model="", prompt_tokens=None, completion_tokens=None, latency_ms=_ms_since(started)
    )


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


class _Call:
    __slots__ = ("abandoned", "done", "error", "finished", "result")

    def __init__(self) -> None:
        self.finished = threading.Event()
        self.done = False  # guarded by the pool's lock, like `abandoned`
        self.abandoned = False
        self.result: LLMReply | None = None
        self.error: BaseException | None = None


class CallPool:
    """Bounded, abandonable calls. Not a ThreadPoolExecutor: an executor keeps a call that
    timed out in its queue or on its thread, so after a burst of slow calls new ones queue
    behind them (33 of 64 were still queued). Here each call gets a fresh thread; the caller
    waits for it up to the deadline and then walks away, giving its slot back at once. The
    abandoned thread ends when its backend returns (the SDK's own timeout sees to that), and
    its result is dropped."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._in_flight = 0  # calls a caller is waiting for: at most `limit`
        self._abandoned = 0  # threads of calls whose caller gave up, still running

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def abandoned(self) -> int:
        return self._abandoned

    def run(self, fn: Callable[[float], LLMReply], *, limit: int, timeout_s: float) -> LLMReply:
        started = time.monotonic()
        deadline = started + timeout_s
        call = _Call()
        with self._cond:
            # Wait for a slot at most half the budget, so a call that starts has at least
            # half of LLM_TIMEOUT_S: one given a few milliseconds would only add a thread
            # that is abandoned at once.
            slot_deadline = started + timeout_s / 2
            while self._in_flight >= limit:
                remaining = slot_deadline - time.monotonic()
                if remaining <= 0:
                    raise LLMError(f"LLM busy: {limit} calls in flight (LLM_MAX_CONCURRENCY)")
                self._cond.wait(remaining)
            if self._in_flight + self._abandoned >= 2 * limit:
                raise LLMError(
                    f"LLM pool exhausted: {self._abandoned} calls that timed out are still running "
                    f"(at most 2 x LLM_MAX_CONCURRENCY threads)"
                )
            self._in_flight += 1
        # The call's thread runs in a copy of the caller's context: its log lines carry the
        # caller's request and trace ids (a new thread starts with an empty context).
        context = contextvars.copy_context()
        try:
            threading.Thread(
                target=context.run, args=(self._target, fn, deadline, call), name="llm-call", daemon=True
            ).start()
        except RuntimeError as exc:  # the process cannot start another thread
            self._release(call, abandon=False)
            raise LLMError("LLM pool exhausted: cannot start a thread") from exc
        call.finished.wait(max(0.0, deadline - time.monotonic()))
        if not self._release(call, abandon=True):
            raise LLMError(f"The LLM did not answer within {timeout_s:g} s (LLM_TIMEOUT_S)")
        if call.error is not None:
            if isinstance(call.error, LLMError):
                raise call.error
            raise LLMError(f"The LLM backend failed: {type(call.error).__name__}") from call.error
        assert call.result is not None
        return call.result

    def _release(self, call: _Call, *, abandon: bool) -> bool:
        """Gives the slot back; returns whether the call had finished. Under the lock, so the
        call's thread sees `abandoned` as set here, or had finished before."""
        with self._cond:
            self._in_flight -= 1
            if not call.done and abandon:
                call.abandoned = True
                self._abandoned += 1
            self._cond.notify_all()
            return call.done

    def _target(self, fn: Callable[[float], LLMReply], deadline: float, call: _Call) -> None:
        result: LLMReply | None = None
        error: BaseException | None = None
        try:
            result = fn(deadline)
        except BaseException as exc:  # handed to the caller, or dropped with the late result
            error = exc
        with self._cond:
            call.result, call.error, call.done = result, error, True
            if call.abandoned:
                self._abandoned -= 1
                self._cond.notify_all()
        call.finished.set()


_pool = CallPool()


def llm_pool() -> CallPool:
    """The process's pool (for metrics and tests)."""
    return _pool
