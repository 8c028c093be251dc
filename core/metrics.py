"""Prometheus metrics, served at `GET /metrics` (core.views.metrics).

Every process counts: gunicorn's workers (the webhook) and the worker process (LLM calls,
delivery attempts). With PROMETHEUS_MULTIPROC_DIR set (`make run`, the tests' servers and
`make bench` make a fresh one; settings.METRICS_MULTIPROC_DIR) prometheus-client runs in
multiprocess mode: each process writes its samples to files of its own in that directory, and
a scrape, answered by whichever gunicorn worker, adds up all of them. prometheus-client picks
the mode from the environment when it is first imported, which is after settings (they put
the directory there); without it each process counts on its own (manage.py commands, the
in-process tests).

What no process writes (the backlog, the open breakers) is read from the database when
scraped, by collectors that the app owning the data provides (dialogues.metrics) and
config/urls.py hands to the view, so this module imports nothing above `core`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Protocol

from django.conf import settings
from django.db import DatabaseError
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from pymongo.errors import PyMongoError

from core.caching import LookupCache
from core.datetimes import aware

logger = logging.getLogger(__name__)

WEBHOOK_REQUESTS = Counter(
    "chatbots_webhook_requests",
    "Webhook requests by outcome (ok, duplicate, rejected, unavailable, error) and HTTP status.",
    ["outcome", "status"],
)
WEBHOOK_INGEST_SECONDS = Histogram(
    "chatbots_webhook_ingest_seconds",
    "Time from a webhook request's arrival to its 2xx answer (the message stored).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
ACK_TO_DELIVERY_SECONDS = Histogram(
    "chatbots_ack_to_delivery_seconds",
    "From a customer message's arrival to its reply's delivery to the channel.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
)
DELIVERY_ATTEMPTS = Counter(
    "chatbots_delivery_attempts",
    "Attempts to POST a reply to its channel, by the state they left it in (delivered, failed, dead).",
    ["outcome"],
)
TYPING_EVENTS = Counter(
    "chatbots_typing_events",
    "Typing events to channels: sent (2xx), failed (never retried), dropped (queue full or too late).",
    ["outcome"],
)
LLM_REQUEST_SECONDS = Histogram(
    "chatbots_llm_request_seconds",
    "LLM calls by outcome (ok, error).",
    ["outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
LLM_ERRORS = Counter(
    "chatbots_llm_errors",
    "Failed LLM calls, by whether the worker retries them.",
    ["retryable"],
)
LLM_TOKENS = Counter(
    "chatbots_llm_tokens",
    "Tokens the LLM server reported, by kind (prompt, completion).",
    ["kind"],
)
# LLM calls per customer message: chatbots_llm_request_seconds_count over this one's _sum.
REPLY_MESSAGES_ANSWERED = Histogram(
    "chatbots_reply_messages_answered",
    "Customer messages each generated reply answers (1, or a burst's messages under the burst reply policy).",
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32),
)
BURST_GENERATIONS_DROPPED = Counter(
    "chatbots_burst_generations_dropped",
    "Burst replies generated and dropped before they were sent, because a newer customer message came in.",
)
HANDOFFS_REQUESTED = Counter(
    "chatbots_handoffs_requested",
    "Dialogues the bot handed to a human: source keyword (a hand-off keyword) or model (the handoff_to_human tool).",
    ["source"],
)

# The pacing of LLM calls by their provider's limits (llm.pacing). `provider` is the provider's
# name, or "default" for the platform's own: bounded by the providers an operator creates.
LLM_PROVIDER_CALLS_IN_FLIGHT = Gauge(
    "chatbots_llm_provider_calls_in_flight",
    "LLM calls in flight, by provider (every process added up).",
    ["provider"],
    multiprocess_mode="livesum",
)
LLM_PERMIT_WAIT_SECONDS = Histogram(
    "chatbots_llm_permit_wait_seconds",
    "Time an LLM call waited for its provider's permit (concurrency, requests and tokens per minute).",
    ["provider"],
    buckets=(0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
LLM_PROVIDER_429 = Counter(
    "chatbots_llm_provider_429",
    "Answers 429 (rate limited) from an LLM provider.",
    ["provider"],
)
LLM_PROVIDER_TOKENS = Counter(
    "chatbots_llm_provider_tokens",
    "Tokens used per provider and bot (as reported, else as estimated); tokens per minute is its rate.",
    ["provider", "bot"],
)


def webhook_outcome(*, status: int, outcome: str | None) -> str:
    """A bounded label: the webhook's own outcomes are many and may grow."""
    if 200 <= status < 300:
        return "duplicate" if outcome == "duplicate" else "ok"
    if status == 503:
        return "unavailable"
    if status >= 500:
        return "error"
    return "rejected"


def webhook_request_observe(*, status: int, outcome: str | None, started: float | None) -> None:
    """`started`: time.monotonic() when the request came in."""
    WEBHOOK_REQUESTS.labels(outcome=webhook_outcome(status=status, outcome=outcome), status=str(status)).inc()
    if 200 <= status < 300 and started is not None:
        WEBHOOK_INGEST_SECONDS.observe(max(0.0, time.monotonic() - started))


class TokenUsage(Protocol):
    @property
    def prompt_tokens(self) -> int | None: ...

    @property
    def completion_tokens(self) -> int | None: ...


def llm_call_observe(*, started: float, reply: TokenUsage | None, error_retryable: bool | None) -> None:
    """One LLM call: `error_retryable` is None when it succeeded."""
    failed = error_retryable is not None
    LLM_REQUEST_SECONDS.labels(outcome="error" if failed else "ok").observe(max(0.0, time.monotonic() - started))
    if failed:
        LLM_ERRORS.labels(retryable="true" if error_retryable else "false").inc()
    if reply is not None:
        if reply.prompt_tokens:
            LLM_TOKENS.labels(kind="prompt").inc(reply.prompt_tokens)
        if reply.completion_tokens:
            LLM_TOKENS.labels(kind="completion").inc(reply.completion_tokens)


def reply_generated_observe(*, messages_answered: int) -> None:
    REPLY_MESSAGES_ANSWERED.observe(messages_answered)


def handoff_requested_observe(*, source: str) -> None:
    HANDOFFS_REQUESTED.labels(source=source).inc()


def burst_generation_dropped() -> None:
    BURST_GENERATIONS_DROPPED.inc()


def delivery_attempt_observe(*, outcome: str) -> None:
    DELIVERY_ATTEMPTS.labels(outcome=outcome).inc()


def typing_event_observe(*, outcome: str) -> None:
    """`sent`, `failed` or `dropped`: a typing event is never a delivery attempt."""
    TYPING_EVENTS.labels(outcome=outcome).inc()


# When each reply's customer message arrived, noted when the reply is generated, so that its
# delivery (usually a moment later, by the same process) costs no database read. Kept longer
# than a reply's retries take (10 attempts, spaced up to 10 minutes).
_acked_at = LookupCache(maxsize=100_000, ttl_s=lambda: 3 * 3600.0)


def reply_acked_note(*, reply_id: str, acked_at: datetime) -> None:
    _acked_at.set(reply_id, acked_at)


def ack_to_delivery_observe(
    *, reply_id: str, delivered_at: datetime, acked_at_load: Callable[[], datetime | None]
) -> None:
    """`acked_at_load` reads the customer message's arrival when this process did not note it
    (the reply was generated before a restart, or by another worker process)."""
    acked_at = _acked_at.get(reply_id)
    _acked_at.discard(reply_id)
    if acked_at is None:
        acked_at = acked_at_load()
    if acked_at is None:
        return
    ACK_TO_DELIVERY_SECONDS.observe(max(0.0, (aware(delivered_at) - aware(acked_at)).total_seconds()))


def gauge_family(name: str, documentation: str, values: dict[str, float], *, label: str) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for key, value in values.items():
        family.add_metric([key], value)
    return family


class _Scrape(Collector):
    """What one scrape reports: every process's metrics, then the scrape-time collectors. A
    collector that cannot reach the database is left out of this scrape (the rest is served)."""

    def __init__(self, sources: Iterable[Collector]):
        self.sources = list(sources)

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            try:
                families = list(source.collect())
            except (DatabaseError, PyMongoError) as exc:
                logger.warning("metrics: %s skipped, database error: %s", type(source).__name__, type(exc).__name__)
                continue
            yield from families


def metrics_exposition(*, collectors: Iterable[Collector] = ()) -> bytes:
    """The Prometheus text exposition of every process's metrics plus `collectors`."""
    directory = settings.METRICS_MULTIPROC_DIR
    # In multiprocess mode the default registry's process and GC collectors would describe
    # only the process that happens to answer: left out.
    base: Collector = MultiProcessCollector(None, path=directory) if directory else REGISTRY
    return generate_latest(_Scrape([base, *collectors]))
