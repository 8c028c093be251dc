"""The worker's LLM calls, waited for on one event loop: a process keeps thousands of calls in
flight without a thread per call.

A dialogue's pass (`worker.pipeline.dialogue_steps`) runs on a worker thread until it needs the
LLM; the call is prepared there (`llm.client.llm_call_prepare`: the provider read, the request
built, so the loop never touches the database) and handed to `LLMRuntime.submit`, which waits
for it here and calls back with the answer. Meanwhile the thread works on other dialogues.

- "openai" calls (a bot's provider, or LLM_BACKEND="openai") go through the SDK's asynchronous
  client, one per server and key, with a connection pool as large as LLM_MAX_CONCURRENCY;
- the mock's delay (LLM_MOCK_DELAY_MS) is an `asyncio.sleep`; the undelayed mock never comes
  here (its answer is ready when the call is prepared);
- a custom callable (a dotted LLM_BACKEND) is synchronous: it runs on a small pool of threads
  of its own (LLM_CUSTOM_THREADS), so a slow one holds those threads, never the worker's.

Every call is waited for at most LLM_TIMEOUT_S; at most LLM_MAX_CONCURRENCY are in flight at
once, the others wait their turn in order. A provider's own limits are kept by `llm.pacing`
before a call starts. The caller's context (its log fields, its trace) is the call's.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cachetools import LRUCache
from django.conf import settings

from llm.client import PreparedCall, custom_reply, mock_reply
from llm.pacing import Pacer
from llm.types import LLMError, LLMReply

logger = logging.getLogger("llm")

CLIENTS_MAX = 256
Done = Callable[[LLMReply | None, LLMError | None], None]


class LLMRuntime:
    """One event loop on a thread of its own. `submit` may be called from any thread."""

    def __init__(self, *, max_in_flight: int | None = None, pacer: Pacer | None = None, process_id: str = "") -> None:
        self.max_in_flight = max_in_flight or settings.LLM_MAX_CONCURRENCY
        self.pacer = pacer if pacer is not None else Pacer(process_id=process_id or _process_id())
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="llm-loop", daemon=True)
        self._ready = threading.Event()
        self._start_lock = threading.Lock()
        self._clients: LRUCache[tuple[str, str], Any] = LRUCache(maxsize=CLIENTS_MAX)
        self._custom = ThreadPoolExecutor(max_workers=settings.LLM_CUSTOM_THREADS, thread_name_prefix="llm-custom")
        self._slots: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.in_flight = 0  # calls started and not answered (read by metrics and tests)
        self.peak_in_flight = 0
        self.waiting = 0  # calls waiting for one of the max_in_flight places

    def start(self) -> LLMRuntime:
        """Starts the loop (once; `submit` starts it on first use, so a worker whose calls are
        all answered at once, the undelayed mock's, never runs it)."""
        with self._start_lock:
            if not self._thread.is_alive() and not self._ready.is_set():
                self._thread.start()
        self._ready.wait()
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._slots = asyncio.Semaphore(self.max_in_flight)
        if self.pacer is not None:
            self._loop.run_until_complete(self.pacer.start())
        self._loop.call_soon(self._ready.set)
        self._loop.run_forever()
        # Stopped: what is still pending is cancelled and the clients close.
        pending = [task for task in self._tasks if not task.done()]
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        if self.pacer is not None:
            self._loop.run_until_complete(self.pacer.stop())
        for client in list(self._clients.values()):
            self._loop.run_until_complete(client.close())
        self._loop.close()

    def stop(self, *, timeout_s: float = 5.0) -> None:
        if not self._thread.is_alive():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout_s)
        self._custom.shutdown(wait=False, cancel_futures=True)

    def submit(self, call: PreparedCall, done: Done) -> None:
        """Waits for `call` on the loop; `done(reply, None)` or `done(None, error)` is called on
        the loop's thread when it ends (it must not block: hand the work on)."""
        if not self._ready.is_set():
            self.start()
        context = contextvars.copy_context()

        def create() -> None:
            task = self._loop.create_task(self._answer(call), context=context)
            self._tasks.add(task)
            task.add_done_callback(lambda finished: self._finished(finished, done))

        self._loop.call_soon_threadsafe(create)

    def _finished(self, task: asyncio.Task[LLMReply], done: Done) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            done(None, LLMError("The LLM call was cancelled (the worker is stopping)"))
            return
        error = task.exception()
        if error is None:
            done(task.result(), None)
        elif isinstance(error, LLMError):
            done(None, error)
        else:
            logger.error("llm call failed unexpectedly", exc_info=error)
            done(None, LLMError(f"The LLM backend failed: {type(error).__name__}"))

    async def _answer(self, call: PreparedCall) -> LLMReply:
        """Waits for the provider's permit (its limits, across processes: `llm.pacing`) and a
        place among this process's calls, then makes the call within LLM_TIMEOUT_S. Waiting
        for a permit is not part of the call's time (the dialogue's lease is kept meanwhile,
        `worker.loop`)."""
        assert self._slots is not None
        self.waiting += 1
        try:
            permit = None
            if self.pacer is not None:
                permit = await self.pacer.acquire(
                    call.provider, call.limits, bot=call.bot, tokens=call.tokens, label=call.provider_name
                )
            await self._slots.acquire()
        except BaseException:
            if permit is not None:
                self.pacer.release(permit, status=None, headers=None, tokens_used=None)
            raise
        finally:
            self.waiting -= 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        status: int | None = None
        headers: dict[str, str] | None = None
        tokens_used: int | None = None
        try:
            async with asyncio.timeout(settings.LLM_TIMEOUT_S):
                reply = await self._call(call)
            status, headers = 200, reply.rate_headers
            if reply.prompt_tokens is not None or reply.completion_tokens is not None:
                tokens_used = (reply.prompt_tokens or 0) + (reply.completion_tokens or 0)
            return reply
        except TimeoutError:
            raise LLMError(f"The LLM did not answer within {settings.LLM_TIMEOUT_S:g} s (LLM_TIMEOUT_S)") from None
        except LLMError as error:
            status, headers = error.status, error.rate_headers
            raise
        finally:
            self.in_flight -= 1
            self._slots.release()
            if permit is not None:
                self.pacer.release(permit, status=status, headers=headers, tokens_used=tokens_used)

    async def _call(self, call: PreparedCall) -> LLMReply:
        if call.kind == "answered":
            assert call.reply is not None
            return call.reply
        if call.kind == "mock":
            await asyncio.sleep(settings.LLM_MOCK_DELAY_MS / 1000)
            reply = mock_reply(call.history, deadline=0.0, delayed=False)
            reply.latency_ms = settings.LLM_MOCK_DELAY_MS
            return reply
        if call.kind == "custom":
            assert call.backend is not None
            return await self._loop.run_in_executor(self._custom, custom_reply, call.backend, call.history)
        return await self._openai(call)

    async def _openai(self, call: PreparedCall) -> LLMReply:
        from llm.openai_backend import async_client, client_key, openai_reply_async

        key = client_key(call.request)
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = async_client(call.request, max_connections=self.max_in_flight)
        return await openai_reply_async(
            client, call.request, timeout_s=settings.LLM_TIMEOUT_S, traceparent=call.traceparent
        )


def _process_id() -> str:
    """This runtime's name in the shared pacing documents: its host and process, and a suffix
    of its own (tests run several runtimes in one process)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
