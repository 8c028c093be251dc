from __future__ import annotations

from contextvars import ContextVar

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
# The W3C trace id of the work in progress: a webhook request, or one message's generation or
# delivery in the worker (`core.tracing.trace_bound` sets and resets it).
_trace_id: ContextVar[str | None] = ContextVar("trace_id", default=None)


def current_request_id() -> str | None:
    return _request_id.get()


def set_request_id(value: str | None) -> object:
    return _request_id.set(value)


def reset_request_id(token: object) -> None:
    _request_id.reset(token)  # type: ignore[arg-type]


def current_trace_id() -> str | None:
    return _trace_id.get()


def set_trace_id(value: str | None) -> object:
    return _trace_id.set(value)


def reset_trace_id(token: object) -> None:
    _trace_id.reset(token)  # type: ignore[arg-type]
