"""A claimed dialogue in hand: its pass (`worker.pipeline.dialogue_steps`, a generator) runs on
the worker's threads stretch by stretch, and waits for each LLM answer on the LLM event loop
(`llm.aio.LLMRuntime`) holding no thread.

    thread:  claim ... read, walk, prepare the call ─┐            ┌─ store, deliver, next ... release
    loop:                                             └─ LLM call ─┘

Each stretch runs in the dialogue's own `contextvars.Context` (log fields, trace), entered by
one thread at a time, so a context entered before a wait is the one left after it. An
undelayed mock's answer is ready when the call is prepared: the pass goes on in the same
thread, with no hop (the benchmark's and most tests' LLM).
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from typing import Any

from dialogues.store.claims import DialogueClaim
from llm.aio import LLMRuntime
from llm.client import llm_call_prepare
from llm.types import LLMError, LLMReply
from worker.bulkheads import Slots
from worker.pipeline import LLMCall, dialogue_steps
from worker.steps import Step

Submit = Callable[[Callable[..., None], Any], None]
Finish = Callable[["DialogueTask", Step | None, BaseException | None], None]


class DialogueTask:
    def __init__(
        self, claim: DialogueClaim, *, slots: Slots, runtime: LLMRuntime, submit: Submit, finish: Finish
    ) -> None:
        self.claim = claim
        self.runtime = runtime
        self._submit = submit
        self._finish = finish
        self._context = contextvars.copy_context()
        self._steps = dialogue_steps(claim, slots=slots)
        self._lock = threading.Lock()  # one stretch at a time (a late callback cannot overlap)
        self.waiting_since: float | None = None  # monotonic time the current LLM wait began

    def start(self) -> None:
        self._submit(self.resume, (None, None))

    def resume(self, outcome: tuple[LLMReply | None, LLMError | None]) -> None:
        """Runs the pass from where it stopped to its next LLM call, or to its end. On a
        worker thread."""
        reply, error = outcome
        with self._lock:
            self.waiting_since = None
            while True:
                try:
                    if error is not None:
                        call = self._context.run(self._steps.throw, error)
                    else:
                        call = self._context.run(self._steps.send, reply)  # type: ignore[arg-type]
                except StopIteration as done:
                    self._finish(self, done.value, None)
                    return
                except Exception as exc:  # noqa: BLE001 - the worker logs it and gives the dialogue back
                    self._finish(self, None, exc)
                    return
                reply, error = None, None
                try:
                    prepared = self._context.run(self._prepare, call)
                except LLMError as exc:
                    error = exc  # a final error, known before any wait: straight back in
                    continue
                if prepared.reply is not None:
                    reply = prepared.reply  # answered already: no wait, no hop
                    continue
                self.waiting_since = time.monotonic()
                # Submitted in the dialogue's context: the call's log lines carry its trace.
                self._context.run(self.runtime.submit, prepared, self._answered)
                return

    @staticmethod
    def _prepare(call: LLMCall) -> Any:
        return llm_call_prepare(chat_bot=call.chat_bot, history=call.history, traceparent=call.traceparent)

    def _answered(self, reply: LLMReply | None, error: LLMError | None) -> None:
        """On the LLM loop's thread: the rest of the pass goes back to a worker thread."""
        self._submit(self.resume, (reply, error))

    def close(self) -> None:
        """Abandons the pass where it waits (the worker is stopping): its lease expires and
        the dialogue comes back; nothing stored is lost."""
        with self._lock:
            self._steps.close()
