"""The worker's threads, shared fairly between tenants.

Every stretch of a dialogue's work (`worker.tasks`) is queued under its bot; the threads take
the bots in turn, one stretch each. With a plain first-come queue, a bot whose thousands of
answers arrive at once would put every other bot's next stretch behind all of them (measured
before: a quiet bot's message waited 4.4 s for its first stretch while a noisy bot's 300
replies were stored and delivered).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

logger = logging.getLogger("worker")


class FairPool:
    def __init__(self, threads: int, *, name: str = "worker") -> None:
        self._queues: dict[Hashable, deque[tuple[Callable[[Any], None], Any]]] = {}
        self._turns: deque[Hashable] = deque()  # the keys with work queued, in turn order
        self._cond = threading.Condition()
        self._running = 0
        self._closed = False
        self._threads = [threading.Thread(target=self._loop, name=f"{name}_{i}", daemon=True) for i in range(threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, key: Hashable, work: Callable[[Any], None], argument: Any) -> bool:
        """Queues `work(argument)` under `key`; False once the pool is shut down."""
        with self._cond:
            if self._closed:
                return False
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = deque()
                self._turns.append(key)
            queue.append((work, argument))
            self._cond.notify()
        return True

    def busy(self) -> bool:
        """Work queued or running."""
        with self._cond:
            return bool(self._turns) or self._running > 0

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._turns and not self._closed:
                    self._cond.wait()
                if self._closed and not self._turns:
                    return
                key = self._turns.popleft()
                queue = self._queues[key]
                work, argument = queue.popleft()
                if queue:
                    self._turns.append(key)  # its next stretch waits for the other keys' turns
                else:
                    del self._queues[key]
                self._running += 1
            try:
                work(argument)
            except Exception:
                logger.exception("worker: a task failed")
            finally:
                with self._cond:
                    self._running -= 1
                    self._cond.notify_all()

    def shutdown(self, *, wait: bool, cancel: bool = False) -> None:
        """No more work is taken; `cancel` drops what is queued; `wait` waits for the rest."""
        with self._cond:
            self._closed = True
            if cancel:
                self._queues.clear()
                self._turns.clear()
            self._cond.notify_all()
        if wait:
            for thread in self._threads:
                if thread is not threading.current_thread():
                    thread.join()
