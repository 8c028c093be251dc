"""LLM providers: their life cycle (create, update, delete) and which one answers a bot.

A bot names its provider (`ChatBot.llm_provider_id`); a bot naming none uses the platform's
default, made from LLM_BACKEND and OPENAI_* exactly as before providers existed (so the mock
stays `make run`'s default). A provider's API key is replaced, never read back: only the
OpenAI client gets it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from bson import ObjectId

from chatbots.models import ChatBot
from core.caching import LookupCache
from core.errors import Conflict
from llm.models import LLMProvider
from llm.types import LLMError, LLMReply

PROVIDER_FIELDS = frozenset(
    {"name", "base_url", "api_key", "max_concurrent", "requests_per_minute", "tokens_per_minute"}
)
PROVIDER_MISSING = "The bot's LLM provider no longer exists"

_providers_by_id = LookupCache()


@dataclass(frozen=True)
class ProviderTarget:
    """Where one call goes: a provider's server and key (never in a repr or a log line)."""

    name: str
    base_url: str
    api_key: str = field(repr=False)
    # The pacing key (the provider's id) and its limits (None: none), for llm.pacing.
    key: str = ""
    max_concurrent: int | None = None
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


def llm_provider_exists(provider_id: ObjectId) -> bool:
    return LLMProvider.objects.filter(pk=provider_id).exists()


def llm_provider_cached(provider_id: ObjectId) -> LLMProvider | None:
    """The provider, read at most once per AUTH_CACHE_TTL_S per process (a replaced key
    takes effect within that time everywhere)."""
    return _providers_by_id.get_or_load(str(provider_id), lambda: LLMProvider.objects.filter(pk=provider_id).first())


def llm_provider_for(chat_bot: ChatBot | None) -> ProviderTarget | None:
    """The provider that answers `chat_bot`; None: the platform's default (LLM_BACKEND).
    Raises a final LLMError when the bot names a provider that is gone."""
    provider_id = chat_bot.llm_provider_id if chat_bot is not None else None
    if provider_id is None:
        return None
    provider = llm_provider_cached(provider_id)
    if provider is None:
        raise LLMError(PROVIDER_MISSING, retryable=False)
    return ProviderTarget(
        name=provider.name,
        base_url=provider.base_url,
        api_key=provider.api_key,
        key=str(provider.pk),
        max_concurrent=provider.max_concurrent,
        requests_per_minute=provider.requests_per_minute,
        tokens_per_minute=provider.tokens_per_minute,
    )


TEST_MESSAGE = "Reply with the single word OK."
TEST_TIMEOUT_S = 10.0


def llm_provider_test(*, provider: LLMProvider, model: str) -> LLMReply:
    """One short call to the provider's server with its key ("Test connection"): the reply
    with its latency, or LLMError (whose message never holds the key)."""
    from llm.openai_backend import openai_reply

    target = ProviderTarget(name=provider.name, base_url=provider.base_url, api_key=provider.api_key)
    bot = ChatBot(name=provider.name, llm_model=model, max_output_tokens=16)
    return openai_reply(
        chat_bot=bot,
        history=[{"role": "USER", "text": TEST_MESSAGE}],
        deadline=time.monotonic() + TEST_TIMEOUT_S,
        provider=target,
    )


def llm_provider_forget(*, provider_id: ObjectId) -> None:
    """Drops this process's cached copy (the others see a change within AUTH_CACHE_TTL_S)."""
    _providers_by_id.discard(str(provider_id))


def _check(fields: dict[str, Any]) -> None:
    unknown = set(fields) - PROVIDER_FIELDS
    if unknown:
        raise TypeError(f"not fields of an LLM provider: {sorted(unknown)}")


def llm_provider_create(**fields: Any) -> LLMProvider:
    _check(fields)
    return LLMProvider.objects.create(**fields)


def llm_provider_update(*, provider: LLMProvider, **fields: Any) -> LLMProvider:
    """Writes the fields given; what is left out keeps its value (the API key too)."""
    _check(fields)
    if not fields:
        return provider
    for name, value in fields.items():
        setattr(provider, name, value)
    provider.save(update_fields=[*fields, "updated_at"])
    _providers_by_id.discard(str(provider.pk))
    return provider


def llm_provider_delete(*, provider: LLMProvider) -> None:
    """Refused while a bot names it: its replies would fail rather than fall back silently."""
    users = ChatBot.objects.filter(llm_provider_id=provider.pk).count()
    if users:
        raise Conflict(f"{users} bot(s) use this LLM provider; give them another one first")
    provider.delete()
    _providers_by_id.discard(str(provider.pk))
