"""Progress for long operator runs: a tqdm bar (rate, ETA) on a terminal, plain lines otherwise.

A bar redraws with carriage returns, which turns a log file or `heroku run` output into noise, so
when the stream is not a TTY the same numbers come as one line every `interval` seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TextIO


class Progress:
    """Counts units of work; `advance()` is thread-safe. Use as a context manager."""

    def __init__(
        self,
        label: str,
        total: int | None,
        stream: TextIO,
        *,
        tty: bool | None = None,
        interval: float = 10.0,
        unit: str = "customer",
        postfix: Callable[[], str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.label = label
        self.total = total
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.interval = interval
        self.unit = unit
        self.postfix = postfix or (lambda: "")
        self._clock = clock
        self._lock = threading.Lock()
        self.done = 0
        self._started = clock()
        self._last_line = self._started
        self._bar = None

    def __enter__(self) -> Progress:
        if self.tty:
            from tqdm import tqdm

            self._bar = tqdm(
                total=self.total, desc=self.label, unit=self.unit, file=self.stream, dynamic_ncols=True, smoothing=0.1
            )
        return self

    def advance(self, n: int = 1) -> None:
        """Count `n` more units done."""
        with self._lock:
            self.done += n
            if self._bar is not None:
                self._bar.update(n)
                extra = self.postfix()
                if extra:
                    self._bar.set_postfix_str(extra, refresh=False)
                return
            now = self._clock()
            if now - self._last_line >= self.interval:
                self._last_line = now
                self._line(now)

    def _line(self, now: float) -> None:
        elapsed = max(now - self._started, 1e-9)
        rate = self.done / elapsed
        parts = [
            f"{self.label}: {self.done}/{self.total} {self.unit}s"
            if self.total is not None
            else f"{self.label}: {self.done} {self.unit}s"
        ]
        parts.append(f"{rate:.1f}/s")
        if self.total and rate > 0:
            parts.append(f"eta {_duration((self.total - self.done) / rate)}")
        extra = self.postfix()
        if extra:
            parts.append(extra)
        self.stream.write(" ".join(parts) + "\n")
        self.stream.flush()

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            if self._bar is not None:
                extra = self.postfix()
                if extra:
                    self._bar.set_postfix_str(extra, refresh=False)
                self._bar.close()
            elif self.done or self.total:
                self._line(self._clock())


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
