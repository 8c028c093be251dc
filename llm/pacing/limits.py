"""A provider's limits, its key in the pacing, a permit, and the pacing's constants."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llm.models import LLMProvider

COLLECTION = "llm_pacing"
LEASE_S = 10.0  # a process's grant of slots lapses this long after its last sync
UNLIMITED_WINDOW = 10_000  # the concurrency window of a provider without max_concurrent
BLOCK_DEFAULT_S = 1.0  # a 429 that says nothing about when to come back
BLOCK_MAX_S = 600.0  # no server header blocks a provider longer than this
BUCKET_FRACTION = 10  # a rate bucket holds at most limit / 10 permits
USAGE_STEP_S = 10  # usage is counted in 10-second steps, kept for a minute
SYNC_GAP_S = 0.02  # between two rounds of syncs
IDLE_SYNC_S = 2.0  # a provider this process does not use is read this often
DB_TIMEOUT_MS = 2000
CAS_ATTEMPTS = 4
STOP_WAIT_S = 5.0  # `stop` waits this long for a round of syncs in progress


DEFAULT_PROVIDER = "default"  # the key of the platform's default provider (LLM_BACKEND, OPENAI_*)


@dataclass(frozen=True)
class Limits:
    max_concurrent: int | None = None
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


def provider_limits(provider: LLMProvider | None) -> Limits:
    """A provider's limits (None: the platform's default provider, which has none)."""
    if provider is None:
        return Limits()
    return Limits(
        max_concurrent=provider.max_concurrent or None,
        requests_per_minute=provider.requests_per_minute or None,
        tokens_per_minute=provider.tokens_per_minute or None,
    )


def provider_key(provider: LLMProvider | None) -> str:
    """The provider's key in the pacing: its id, or DEFAULT_PROVIDER."""
    return DEFAULT_PROVIDER if provider is None else str(provider.pk)


@dataclass(eq=False)
class Permit:
    provider: str
    bot: str
    tokens: int
    started: float  # time.monotonic() when it was granted
    waited_s: float
    released: bool = False
