"""Pacing by the providers' limits (llm.pacing): shared through the real test database by
Pacers standing for separate worker processes (and one real second process), against the real
chat-completions test server."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from llm.pacing import (
    BLOCK_DEFAULT_S,
    Limits,
    Pacer,
    Permit,
    block_seconds,
    duration_s,
    pacing_usage,
    provider_key,
)
from llm.providers import llm_provider_create
from tests.support.chat_completions import ChatCompletionsServer, ChatReply

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
SYNC_S = 0.05  # the Pacers' sync interval here: a block reaches the others within it


@pytest.fixture
def server() -> Iterator[ChatCompletionsServer]:
    instance = ChatCompletionsServer().start()
    yield instance
    instance.stop()


def _key() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def _run[T](body: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(body())


async def _pacers(*names: str) -> list[Pacer]:
    pacers = [Pacer(process_id=name, sync_interval_s=SYNC_S) for name in names]
    for pacer in pacers:
        await pacer.start()
    return pacers


async def _call(
    pacer: Pacer, client: openai.AsyncOpenAI, key: str, limits: Limits, *, bot: str, starts: list[float] | None = None
) -> int:
    """One call as the worker makes it: a permit, the request, the permit released with the
    answer's status and headers."""
    permit = await pacer.acquire(key, limits, bot=bot, tokens=30)
    if starts is not None:
        starts.append(time.monotonic())
    try:
        raw = await client.chat.completions.with_raw_response.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )
    except openai.APIStatusError as exc:
        pacer.release(permit, status=exc.status_code, headers=exc.response.headers, tokens_used=None)
        return exc.status_code
    except BaseException:
        pacer.release(permit, status=None, headers=None, tokens_used=None)
        raise
    usage = raw.parse().usage
    used = usage.total_tokens if usage else None
    pacer.release(permit, status=raw.status_code, headers=raw.headers, tokens_used=used)
    return raw.status_code


def _client(server: ChatCompletionsServer, key: str = "sk-test") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=key, base_url=server.base_url, max_retries=0, timeout=10)


def test_two_processes_never_exceed_the_providers_concurrency(server: ChatCompletionsServer) -> None:
    server.default = ChatReply(delay_s=0.1)
    key, limits = _key(), Limits(max_concurrent=3)

    async def body() -> list[int]:
        first, second = await _pacers("process-a", "process-b")
        client = _client(server)
        try:
            calls = [
                _call(pacer, client, key, limits, bot=f"bot-{i % 3}") for i in range(16) for pacer in (first, second)
            ]
            return list(await asyncio.gather(*calls))
        finally:
            await client.close()
            await first.stop()
            await second.stop()

    statuses = _run(body)

    assert statuses == [200] * 32
    assert 2 <= server.max_in_flight <= 3


def test_a_second_os_process_shares_the_concurrency_limit(server: ChatCompletionsServer) -> None:
    server.default = ChatReply(delay_s=0.1)
    key, limits = _key(), Limits(max_concurrent=2)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings_test", "PROMETHEUS_MULTIPROC_DIR": ""}
    database = settings.DATABASES["default"]["NAME"]

    async def body() -> tuple[list[int], list[int]]:
        peer = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "llm.tests.pacing_peer",
            database,
            server.base_url,
            key,
            "2",
            "14",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
        )
        assert peer.stdout is not None
        assert (await asyncio.wait_for(peer.stdout.readline(), 60)).strip() == b"ready"
        [pacer] = await _pacers("this-process")
        client = _client(server)
        try:
            ours = await asyncio.gather(*(_call(pacer, client, key, limits, bot="bot") for _ in range(14)))
            out, _ = await asyncio.wait_for(peer.communicate(), 60)
        finally:
            await client.close()
            await pacer.stop()
        return list(ours), json.loads(out.decode().strip().splitlines()[-1])

    ours, theirs = _run(body)

    assert ours == [200] * 14 and theirs == [200] * 14
    assert {request.bearer for request in server.requests} == {"sk-test", "sk-peer"}
    assert server.max_in_flight <= 2


def test_a_429_with_retry_after_stops_every_process_for_that_long(server: ChatCompletionsServer) -> None:
    """The first request is answered 429, Retry-After 3: the process that got it sends nothing
    for 3 s, the other nothing once its next sync has seen it (SYNC_S, plus slack for a busy
    machine)."""
    server.then(ChatReply(status=429, headers={"Retry-After": "3"}))
    server.default = ChatReply(delay_s=0.02)
    key, limits = _key(), Limits(max_concurrent=4)
    answered: dict[str, float] = {}

    async def body() -> None:
        pacers = await _pacers("process-a", "process-b")
        clients = {pacer.process_id: _client(server, f"sk-{pacer.process_id}") for pacer in pacers}

        async def keep_calling(pacer: Pacer) -> None:
            deadline = time.monotonic() + 4.0
            while time.monotonic() < deadline:
                status = await _call(pacer, clients[pacer.process_id], key, limits, bot="bot")
                if status == 429:
                    answered["at"] = time.monotonic()
                    answered["by"] = f"sk-{pacer.process_id}"

        try:
            await asyncio.gather(*(keep_calling(pacer) for pacer in pacers for _ in range(2)))
        finally:
            for pacer in pacers:
                await clients[pacer.process_id].close()
                await pacer.stop()

    _run(body)

    at = answered["at"]
    during = [request for request in server.requests if at + 0.05 < request.at < at + 2.95]
    assert [r for r in during if r.bearer == answered["by"]] == []
    assert [r for r in during if r.at > at + SYNC_S + 0.5] == []
    assert {r.bearer for r in server.requests if r.at > at + 3} == {"sk-process-a", "sk-process-b"}


def test_remaining_requests_zero_paces_until_the_reset(server: ChatCompletionsServer) -> None:
    server.then(ChatReply(headers={"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s"}))
    key, limits = _key(), Limits(requests_per_minute=6000)
    starts: list[float] = []

    async def body() -> None:
        [pacer] = await _pacers("process-a")
        client = _client(server)
        try:
            for _ in range(2):
                await _call(pacer, client, key, limits, bot="bot", starts=starts)
        finally:
            await client.close()
            await pacer.stop()

    _run(body)

    first, second = server.requests
    assert second.at - first.at >= 2.0
    assert len(starts) == 2


def test_the_reset_headers_formats() -> None:
    assert [duration_s(text) for text in ("1s", "6m0s", "20ms", "0.5s", "1h2m3s", "7", "", "soon", "5x")] == [
        1.0,
        360.0,
        0.02,
        0.5,
        3723.0,
        7.0,
        None,
        None,
        None,
    ]
    assert block_seconds(200, {"x-ratelimit-remaining-requests": "3", "x-ratelimit-reset-requests": "2s"}) is None
    headers = {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "6m0s"}
    assert block_seconds(200, headers) == 360.0
    # At its limit's pace a server keeps saying "0 remaining": the next call may go once one
    # request is back (a minute over the limit), not when the whole limit is.
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6s",
               "x-ratelimit-limit-requests": "600"}  # fmt: skip
    assert block_seconds(200, headers) == 0.1
    assert block_seconds(429, {"retry-after-ms": "1500", "retry-after": "2"}) == 1.5  # the finer one
    assert block_seconds(429, {"retry-after": "9"}) == 9.0
    assert block_seconds(429, {"retry-after-ms": "1500"}) == 1.5
    assert block_seconds(429, {}) == BLOCK_DEFAULT_S


def test_bots_take_turns_a_bot_with_a_long_queue_delays_another_by_at_most_one_slot() -> None:
    key, limits = _key(), Limits(max_concurrent=1)
    order: list[str] = []
    asked_at: list[int] = []

    async def body() -> None:
        [pacer] = await _pacers("process-a")

        async def one(bot: str) -> None:
            permit = await pacer.acquire(key, limits, bot=bot, tokens=10)
            order.append(bot)
            await asyncio.sleep(0.01)
            pacer.release(permit, status=200, headers=None, tokens_used=10)

        busy = [asyncio.create_task(one("bot-b")) for _ in range(200)]
        while len(order) < 3:
            await asyncio.sleep(0.005)
        asked_at.append(len(order))
        await one("bot-a")
        for task in busy:
            task.cancel()
        await asyncio.gather(*busy, return_exceptions=True)
        await pacer.stop()

    _run(body)

    assert order.index("bot-a") - asked_at[0] <= 1
    assert order.count("bot-b") < 200


def test_a_bot_ceiling_caps_one_bots_calls_in_flight() -> None:
    key, limits = _key(), Limits(max_concurrent=10)
    most: dict[str, int] = {}
    now: dict[str, int] = {}

    async def body() -> None:
        [pacer] = await _pacers("process-a")

        async def one(bot: str) -> None:
            permit = await pacer.acquire(key, limits, bot=bot, tokens=10, bot_ceiling=2)
            now[bot] = now.get(bot, 0) + 1
            most[bot] = max(most.get(bot, 0), now[bot])
            await asyncio.sleep(0.02)
            now[bot] -= 1
            pacer.release(permit, status=200, headers=None, tokens_used=10)

        await asyncio.gather(*(one(f"bot-{i % 2}") for i in range(20)))
        await pacer.stop()

    _run(body)

    assert most == {"bot-0": 2, "bot-1": 2}


def test_a_429_halves_the_window_and_successes_grow_it_back() -> None:
    key, limits = _key(), Limits(max_concurrent=8)
    seen: dict[str, Any] = {}

    async def body() -> None:
        [pacer] = await _pacers("process-a")
        permits = [await pacer.acquire(key, limits, bot="bot", tokens=1) for _ in range(8)]
        quick = {"retry-after-ms": "5"}
        pacer.release(permits[0], status=429, headers=quick, tokens_used=0)
        seen["after_429"] = pacer.window(key)
        # Sent before the decrease: the same round, no second halving.
        pacer.release(permits[1], status=429, headers=quick, tokens_used=0)
        seen["after_second_429"] = pacer.window(key)
        for permit in permits[2:]:
            pacer.release(permit, status=200, headers=None, tokens_used=1)
        # The window bounds the calls in flight.
        await asyncio.sleep(0.05)
        waiting = [asyncio.create_task(pacer.acquire(key, limits, bot="bot", tokens=1)) for _ in range(8)]
        await asyncio.sleep(0.2)
        seen["in_flight"] = pacer.in_flight(key)
        for task in waiting:
            task.cancel()
        results = await asyncio.gather(*waiting, return_exceptions=True)
        for result in results:
            if isinstance(result, Permit):
                pacer.release(result, status=200, headers=None, tokens_used=1)
        for _ in range(60):
            permit = await pacer.acquire(key, limits, bot="bot", tokens=1)
            pacer.release(permit, status=200, headers=None, tokens_used=1)
        seen["grown"] = pacer.window(key)
        await pacer.stop()

    _run(body)

    assert seen["after_429"] == 4.0 and seen["after_second_429"] == 4.0
    assert seen["in_flight"] == 5  # 4, and 6 successes of 1/window each
    assert seen["grown"] == 8.0


def test_usage_counts_every_process_and_the_admin_page_shows_it(admin_client: Client) -> None:
    provider = llm_provider_create(
        name="Paced", base_url="https://llm.example.com/v1", api_key="sk-x", max_concurrent=5, tokens_per_minute=90_000
    )
    key, limits = provider_key(provider), Limits(max_concurrent=5, tokens_per_minute=90_000)
    during: dict[str, Any] = {}

    async def body() -> None:
        first, second = await _pacers("process-a", "process-b")
        held = [
            await first.acquire(key, limits, bot="bot-1", tokens=100),
            await second.acquire(key, limits, bot="bot-2", tokens=100),
        ]
        await asyncio.sleep(SYNC_S * 6)
        during.update(await asyncio.to_thread(pacing_usage, key))
        for pacer, permit in zip((first, second), held, strict=True):
            pacer.release(permit, status=200, headers=None, tokens_used=40)
        permit = await first.acquire(key, limits, bot="bot-1", tokens=100)
        first.release(permit, status=429, headers={"retry-after": "30"}, tokens_used=0)
        await first.stop()
        await second.stop()

    _run(body)
    after = pacing_usage(key)

    assert during["calls_in_flight"] == 2 and during["processes"] == 2
    assert after["calls_in_flight"] == 0
    assert after["requests_last_minute"] == 3 and after["tokens_last_minute"] == 80
    assert after["limits"] == {"max_concurrent": 5, "requests_per_minute": None, "tokens_per_minute": 90_000}
    assert after["blocked_until"] is not None

    page = admin_client.get(reverse("admin:llm_llmprovider_change", args=[provider.pk])).content.decode()
    assert 'id="usage-requests">3<' in page and 'id="usage-tokens">80<' in page
    assert 'id="usage-blocked"' in page and "sk-x" not in page


def test_the_api_shows_a_providers_usage(api_client: Any) -> None:
    provider = llm_provider_create(name="Quiet", base_url="https://llm.example.com/v1", api_key="sk-x")

    body = api_client.get(f"/api/llm_providers/{provider.pk}/").json()

    assert body["usage"] == {
        "calls_in_flight": 0,
        "requests_last_minute": 0,
        "tokens_last_minute": 0,
        "blocked_until": None,
    }
    assert "api_key" not in body
