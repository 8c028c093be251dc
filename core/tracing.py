"""W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent` and `tracestate`
headers, parsed strictly and made.

`traceparent` is `00-<trace-id>-<parent-id>-<flags>`: version 00 only, a trace id of 32 and a
parent (span) id of 16 lowercase hex digits, neither all zeros, two hex digits of flags.
Anything else is not a traceparent and is ignored: the caller gets a fresh trace, never an
error (a malformed tracing header must not cost anyone their message). `tracestate` is kept
only beside a valid traceparent, only when every list-member is well formed, and at most
TRACESTATE_MAX_LENGTH characters (whole members are dropped from the end to fit, as the
specification allows).

No spans are recorded or exported here: each unit of work gets a span id of its own so that
what we send downstream names it as the parent, and the trace id goes on every log line.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from core.request_context import reset_trace_id, set_trace_id

TRACEPARENT_HEADER = "traceparent"
TRACESTATE_HEADER = "tracestate"
TRACEPARENT_LENGTH = 55
TRACESTATE_MAX_LENGTH = 512
TRACESTATE_MAX_MEMBERS = 32
# A trace we start is marked sampled, so that whoever records spans downstream (the channel,
# an LLM gateway) keeps theirs under our trace id.
NEW_TRACE_FLAGS = "01"

_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE_ID = "0" * 32
_ZERO_SPAN_ID = "0" * 16
_SAMPLED = 0x01
# tracestate list-member: key "=" value (Trace Context, section 3.3.1).
_KEY_CHARS = r"[a-z0-9_\-*/]"
_TRACESTATE_MEMBER = re.compile(
    rf"(?:[a-z]{_KEY_CHARS}{{0,255}}|[a-z0-9]{_KEY_CHARS}{{0,240}}@[a-z]{_KEY_CHARS}{{0,13}})"
    r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)
# Optional whitespace around list-members (HTTP's OWS).
_OWS = " \t"


@dataclass(frozen=True)
class TraceContext:
    trace_id: str
    span_id: str
    flags: str = NEW_TRACE_FLAGS
    tracestate: str = ""

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def child(self) -> TraceContext:
        """The same trace, a new span (whose parent is this one)."""
        return replace(self, span_id=new_span_id())


def new_trace_id() -> str:
    while True:
        value = secrets.token_hex(16)
        if value != _ZERO_TRACE_ID:  # invalid by the specification (one chance in 2**128)
            return value


def new_span_id() -> str:
    while True:
        value = secrets.token_hex(8)
        if value != _ZERO_SPAN_ID:
            return value


def trace_new() -> TraceContext:
    return TraceContext(trace_id=new_trace_id(), span_id=new_span_id())


def traceparent_parse(value: str | None, *, tracestate: str | None = None) -> TraceContext | None:
    """The context in a `traceparent` header (and its `tracestate`), or None when it is absent
    or malformed. Several `traceparent` headers (joined with commas by the server) are
    malformed too."""
    if not value:
        return None
    value = value.strip(_OWS)
    if len(value) != TRACEPARENT_LENGTH:
        return None
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return None
    trace_id, span_id, flags = match.groups()
    if trace_id == _ZERO_TRACE_ID or span_id == _ZERO_SPAN_ID:
        return None
    # Only the sampled flag is defined for version 00; unknown flags are not passed on.
    return TraceContext(
        trace_id=trace_id,
        span_id=span_id,
        flags=f"{int(flags, 16) & _SAMPLED:02x}",
        tracestate=tracestate_clean(tracestate),
    )


def tracestate_clean(value: str | None) -> str:
    """The `tracestate` to keep: "" when absent or malformed (a list we cannot read is not
    passed on in part), bounded to TRACESTATE_MAX_LENGTH characters and
    TRACESTATE_MAX_MEMBERS members by dropping whole members from the end."""
    if not value:
        return ""
    members = [member.strip(_OWS) for member in value.split(",")]
    members = [member for member in members if member]  # empty members are allowed, and dropped
    keys: set[str] = set()
    for member in members:
        if _TRACESTATE_MEMBER.fullmatch(member) is None:
            return ""
        key = member.split("=", 1)[0]
        if key in keys:
            return ""  # a key appears at most once
        keys.add(key)
    kept: list[str] = []
    length = 0
    for member in members[:TRACESTATE_MAX_MEMBERS]:
        added = len(member) + (1 if kept else 0)
        if length + added > TRACESTATE_MAX_LENGTH:
            break
        kept.append(member)
        length += added
    return ",".join(kept)


def trace_from_headers(traceparent: str | None, tracestate: str | None) -> TraceContext:
    """The span of a request that came in with these headers: a child of the caller's span,
    or, without a valid traceparent, the root of a new trace."""
    incoming = traceparent_parse(traceparent, tracestate=tracestate)
    return incoming.child() if incoming is not None else trace_new()


def trace_continue(traceparent: str | None, tracestate: str | None = None) -> TraceContext:
    """A new span in the trace stored with a message (`Message.traceparent`); a new trace
    when the message has none (stored before tracing existed)."""
    return trace_from_headers(traceparent, tracestate)


@contextmanager
def trace_bound(trace: TraceContext) -> Iterator[TraceContext]:
    """Puts the trace id on every log line written inside the block (and in threads started
    with a copy of the context)."""
    token = set_trace_id(trace.trace_id)
    try:
        yield trace
    finally:
        reset_trace_id(token)
