"""Putting a run's items into the outbox on a thread of its own, while other threads send them.

The campaign opens every customer's cases and queues their messages (about 10 ms a customer: a
minute for 5,000) while the worker's sending threads already send what is queued; waiting for the
whole queue first would leave the providers' limits unused for that minute.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class BackgroundQueue(Generic[T]):
    """`items` put one at a time with `put_one(item)` (True: queued, False: skipped), in order.

    `put(n)` queues the first ones in the caller's thread, `start()` the rest on a thread of its own;
    `queued()` is what is in the outbox so far. An error while queueing (the database gone) stops the
    queueing and is raised again by `finish()`, in the caller's thread.
    """

    def __init__(self, items: list[T], put_one: Callable[[T], bool]):
        self.planned = len(items)
        self.skipped = 0  # items put_one skipped (e.g. customers messaged meanwhile)
        self._put_one = put_one
        self._rest = iter(items)
        self._queued: list[T] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._stopped = threading.Event()

    def put(self, count: int | None = None) -> None:
        """Queue the next `count` items (None: all the rest) in this thread."""
        for item in itertools.islice(self._rest, count):
            if self._stopped.is_set():
                return
            if not self._put_one(item):
                self.skipped += 1
                continue
            with self._lock:
                self._queued.append(item)

    def start(self) -> None:
        """Queue the rest on a thread of its own."""

        def run() -> None:
            try:
                self.put()
            except BaseException as exc:  # re-raised by finish(), in the caller's thread
                self._error = exc

        self._thread = threading.Thread(target=run, name="campaign-queue", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Queue no more (the item in hand is finished: each is one transaction) and wait for that."""
        self._stopped.set()
        self.wait()

    def busy(self) -> bool:
        """Whether items are still being queued."""
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> None:
        """Wait up to `timeout` seconds (None: for good) for the queueing to end."""
        if self._thread is not None:
            self._thread.join(timeout)

    def finish(self) -> None:
        """Wait for the queueing to end; raise what stopped it, if anything did."""
        self.wait()
        if self._error is not None:
            raise self._error

    def queued(self) -> list[T]:
        """The items queued so far (a copy: the queueing thread appends meanwhile)."""
        with self._lock:
            return list(self._queued)
