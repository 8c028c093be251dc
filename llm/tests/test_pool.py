"""The bounded pool: calls that time out give their slot back at once and never pile up."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from llm.client import HistoryItem, LLMError, llm_pool, llm_reply_generate

HI: list[HistoryItem] = [{"role": "USER", "text": "hi"}]
_release = threading.Event()


def sleeping_llm(history):
    """Sleeps 2 s, ignoring every timeout (as a misbehaving client would); the test's end
    wakes it early so that no thread outlives the test."""
    _release.wait(2.0)
    return "late"


def fast_llm(history):
    return "fast"


@pytest.fixture(autouse=True)
def sleepers() -> Iterator[None]:
    _release.clear()
    yield
    _release.set()
    deadline = time.monotonic() + 3
    while llm_pool().abandoned and time.monotonic() < deadline:
        time.sleep(0.01)
    assert llm_pool().abandoned == 0 and llm_pool().in_flight == 0


SLEEPING = "llm.tests.test_pool.sleeping_llm"
FAST = "llm.tests.test_pool.fast_llm"


def _call() -> tuple[float, str]:
    """One call with the current settings: (seconds taken, reply text or error message). The
    settings are changed by the main thread only: override_settings swaps them process-wide."""
    started = time.monotonic()
    try:
        text = llm_reply_generate(chat_bot=None, history=HI).text
        return time.monotonic() - started, text
    except LLMError as exc:
        assert exc.retryable
        return time.monotonic() - started, exc.message


def test_a_burst_of_slow_calls_fails_fast_and_leaves_the_pool_free(settings) -> None:
    settings.LLM_TIMEOUT_S, settings.LLM_MAX_CONCURRENCY, settings.LLM_BACKEND = 0.2, 8, SLEEPING
    results: list[tuple[float, str]] = []
    lock = threading.Lock()
    # All 64 call at the same moment (starting 64 threads one by one can take longer than
    # the timeout on a busy machine, and the burst would become two).
    ready = threading.Barrier(65)

    def one() -> None:
        ready.wait()
        outcome = _call()
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=one) for _ in range(64)]
    for thread in threads:
        thread.start()
    ready.wait()
    started = time.monotonic()
    for thread in threads:
        thread.join()
    burst = time.monotonic() - started

    assert len(results) == 64
    slowest = max(elapsed for elapsed, _ in results)
    assert slowest < 0.35, slowest
    timed_out = [text for _, text in results if "did not answer" in text]
    busy = [text for _, text in results if text.startswith("LLM busy")]
    assert len(timed_out) == 8  # the pool's 8 slots, each given back at the timeout
    assert len(timed_out) + len(busy) == 64
    assert llm_pool().in_flight == 0
    assert llm_pool().abandoned == 8  # still sleeping, but holding no slot

    # Right after: a fast call is served at once, not queued behind the sleepers.
    settings.LLM_BACKEND = FAST
    elapsed, text = _call()
    assert text == "fast"
    assert elapsed < 0.05, elapsed
    print(f"burst of 64: {burst:.3f} s, slowest call {slowest:.3f} s, fast call after it {elapsed * 1000:.1f} ms")


def test_abandoned_threads_are_bounded_then_the_pool_recovers(settings) -> None:
    settings.LLM_TIMEOUT_S, settings.LLM_MAX_CONCURRENCY, settings.LLM_BACKEND = 0.1, 2, SLEEPING
    # Four slow calls, one after the other: each times out and leaves its thread behind.
    for _ in range(4):
        elapsed, text = _call()
        assert "did not answer" in text and elapsed < 0.25
    assert llm_pool().abandoned == 4

    # 2 x LLM_MAX_CONCURRENCY threads are alive: refused at once, even a fast call.
    settings.LLM_BACKEND = FAST
    elapsed, text = _call()
    assert text.startswith("LLM pool exhausted")
    assert elapsed < 0.05

    # The sleepers end; their late results are dropped and the pool serves again.
    _release.set()
    deadline = time.monotonic() + 2
    while llm_pool().abandoned and time.monotonic() < deadline:
        time.sleep(0.01)
    assert llm_pool().abandoned == 0
    assert _call()[1] == "fast"


def test_a_caller_waits_for_a_slot_while_it_frees_in_time(settings) -> None:
    """With the one slot taken, a second call waits (at most half the budget) and runs as soon
    as the slot is given back."""
    settings.LLM_TIMEOUT_S, settings.LLM_MAX_CONCURRENCY, settings.LLM_BACKEND = 1.0, 1, SLEEPING
    first: list[tuple[float, str]] = []
    holder = threading.Thread(target=lambda: first.append(_call()))
    holder.start()
    deadline = time.monotonic() + 1
    while llm_pool().in_flight < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert llm_pool().in_flight == 1
    settings.LLM_BACKEND = FAST
    threading.Timer(0.2, _release.set).start()
    elapsed, text = _call()
    holder.join()
    assert text == "fast"
    assert 0.15 < elapsed < 0.45, elapsed
    assert first[0][1] == "late"


def test_a_caller_gives_up_waiting_for_a_slot_at_half_the_budget(settings) -> None:
    settings.LLM_TIMEOUT_S, settings.LLM_MAX_CONCURRENCY, settings.LLM_BACKEND = 0.4, 1, SLEEPING
    holder = threading.Thread(target=_call)
    holder.start()
    deadline = time.monotonic() + 1
    while llm_pool().in_flight < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    settings.LLM_BACKEND = FAST
    elapsed, text = _call()
    holder.join()
    assert text.startswith("LLM busy")
    assert 0.15 < elapsed < 0.3, elapsed
