"""Pacing of LLM calls by their provider's limits, shared by every worker process and host
through MongoDB. An asyncio API for the worker's LLM event loop:

    pacer = Pacer(process_id="host-1:4242")          # one per process, on the LLM event loop
    await pacer.start()
    permit = await pacer.acquire(provider_key, Limits(...), bot=str(bot.pk), tokens=estimate)
    try:
        answer = await call_the_llm()
    except openai.APIStatusError as exc:
        pacer.release(permit, status=exc.status_code, headers=exc.response.headers, tokens_used=None)
        raise
    except BaseException:
        pacer.release(permit, status=None, headers=None, tokens_used=None)  # timeout, cancelled...
        raise
    else:
        pacer.release(permit, status=200, headers=raw_response.headers, tokens_used=usage.total_tokens)
    ...
    await pacer.stop()                                # gives this process's slots back

What the caller must do:

- `acquire` returns only when every limit allows one more call: the call may then start at
  once (it is never sent to be refused). It waits as long as it takes: bound it with
  `asyncio.timeout()` if needed (a cancelled `acquire` leaves no trace; a permit it had just
  been given is released). `provider` is a key: the provider's id, or "default" for the
  platform's default provider. `tokens`: the call's estimate (prompt estimate + max output);
  it counts against `tokens_per_minute` until the call's `release` corrects it. `label`: the
  provider's name, for metrics (default: the key). `bot_ceiling`: at most this many of the
  bot's calls in flight on this provider in this process (default LLM_BOT_CONCURRENCY_CEILING,
  0: none).
- Every permit is released exactly once (a second release is ignored), with the answer's
  status and headers when there was one. `release` is synchronous and never touches the
  database; call it on the loop's thread.
- `acquire`/`release` run on one event loop (the one `start` ran on); they are not thread-safe.

What the limits mean, and how they are held across processes (documents of the `llm_pacing`
collection, one per provider key, `_id` the key; every write is one single-document update
guarded by a version number, retried on a conflict, never a `find_one_and_update`):

- `max_concurrent`: each process holds a grant of slots in the provider's document, with a
  lease (LEASE_S, renewed while it is used, so a dead process's grant lapses). A grant is
  raised only by a write that keeps the sum of the live grants within the limit, and a process
  starts a call only while its calls in flight are fewer than its grant: across all processes
  the calls in flight never exceed the limit. The slots are split by the processes' demand
  (max-min fair); a process holding more than its share stops starting calls beyond it and
  gives the slots back as its calls end.
- `requests_per_minute` / `tokens_per_minute`: shared token buckets in the same document
  (refilled at limit/60 a second, holding at most a tenth of the limit, so a minute's permits
  never go out in one burst). Each sync a process leases from them what its waiting calls
  need, and gives back what it did not use at the next one: a permit costs no round trip.
  A call needing more tokens than the bucket holds is let through when the bucket is not
  empty, and the debt is paid by the refill. `release(tokens_used=)` corrects the estimate.
- A 429, or `x-ratelimit-remaining-requests`/`-tokens` at 0, blocks the provider until the
  server says (`retry-after-ms`, `Retry-After`, `x-ratelimit-reset-requests`/`-tokens` such
  as "1s", "6m0s", "20ms"; a 429 saying nothing: BLOCK_DEFAULT_S; at most BLOCK_MAX_S): at
  once in this process, in the others at their next sync (within `sync_interval_s`).
- AIMD, per provider in each process: the process's concurrency window starts at
  `max_concurrent` (UNLIMITED_WINDOW without one); a 429 halves it (from the calls that were
  in flight, at least 1, once per round of calls), each success adds 1/window (+1 per
  window's worth of successes), never above the limit.
- Fair share between bots, in each process: a free slot goes to the waiting bot that was
  served least recently, so a bot with thousands of calls queued delays another bot's next
  call by at most one slot. Across processes the slots follow the processes' demand.

The database is used only by a background task (`pymongo.AsyncMongoClient`, one connection of
its own) every `sync_interval_s` (LLM_PACING_SYNC_MS), and at once when a call waits for what
only a sync can give; `acquire` and `release` never wait on it. While the database cannot be
reached, a process keeps pacing with what it holds: its grant of slots (kept, though no longer
renewed: if other processes still reach the database they may take it over once its lease
lapses, and the limit may then be overrun by it until this process syncs again), or one slot
when it holds none; requests and tokens per minute at its own share of the limit (the limit
divided by the processes it last saw); 429s and the servers' headers as before. It logs the
outage once and keeps trying; it never stops the loop.

`pacing_usage(key)` (synchronous, for the provider's admin page and API) reads the same
document: calls in flight in all processes, requests and tokens of the last minute, whether
and until when a 429 blocks the provider.
"""

from __future__ import annotations

from llm.pacing.headers import block_seconds, duration_s
from llm.pacing.limits import BLOCK_DEFAULT_S, DEFAULT_PROVIDER, Limits, Permit, provider_key, provider_limits
from llm.pacing.pacer import Pacer
from llm.pacing.usage import pacing_usage

__all__ = [
    "BLOCK_DEFAULT_S",
    "DEFAULT_PROVIDER",
    "Limits",
    "Pacer",
    "Permit",
    "block_seconds",
    "duration_s",
    "pacing_usage",
    "provider_key",
    "provider_limits",
]
