"""A thread-safe token bucket shared by every request an adapter makes to one provider.

Loops allows about 10 requests a second per team and Intercom meters each app in 10-second windows;
the worker sends from several threads, so the adapters take a token before every HTTP call instead of
finding the limit through 429s. When a 429 does arrive, `pause_for` stops *every* caller sharing the
bucket until the provider's Retry-After has passed, not only the thread that was refused.

The limit is per process: several dynos each get their own bucket, and the provider's 429 (with
`pause_for`) is what keeps them honest together.
"""

from __future__ import annotations

import email.utils
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC


class TokenBucket:
    """`rate_per_second` tokens refill continuously up to `burst` (default: one second's worth).

    `clock` and `sleep` are injectable so tests drive time by hand instead of sleeping.
    """

    def __init__(
        self,
        rate_per_second: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if rate_per_second <= 0:
            raise ValueError("rate_per_second must be positive")
        self.rate = float(rate_per_second)
        self.capacity = float(burst) if burst is not None else max(1.0, self.rate)
        if self.capacity < 1:
            raise ValueError("burst must allow at least one request")
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.capacity
        self._updated = clock()
        self._paused_until = float("-inf")
        self.pauses = 0  # 429s reported to this bucket (for run summaries)

    def set_rate(self, rate_per_second: float) -> None:
        """Change the rate (and the burst with it, one second's worth), e.g. from a command's option."""
        if rate_per_second <= 0:
            raise ValueError("rate_per_second must be positive")
        with self._lock:
            self._refill(self._clock())
            self.rate = float(rate_per_second)
            self.capacity = max(1.0, self.rate)
            self._tokens = min(self._tokens, self.capacity)

    def _refill(self, now: float) -> None:
        elapsed = now - self._updated
        if elapsed > 0:
            self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
            self._updated = now

    def acquire(self) -> float:
        """Block until a token is available and take it; returns the seconds spent waiting."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                if now < self._paused_until:
                    delay = self._paused_until - now
                else:
                    self._refill(now)
                    # Tolerance: refilling for exactly the computed delay can land a hair under 1.0 in
                    # floating point, and a delay of 1e-17 s does not move a clock: wait forever.
                    if self._tokens >= 1 - 1e-9:
                        self._tokens = max(0.0, self._tokens - 1)
                        return waited
                    delay = (1 - self._tokens) / self.rate
            # Sleep outside the lock so other callers can still pause or take refilled tokens.
            self._sleep(delay)
            waited += delay

    def pause_for(self, seconds: float) -> None:
        """Hold every caller for `seconds` (a provider's Retry-After); a longer pause already set wins."""
        if seconds <= 0:
            return
        with self._lock:
            self.pauses += 1
            until = self._clock() + seconds
            if until > self._paused_until:
                self._paused_until = until
                # Resume gently: one request when the pause ends, then the steady rate, rather than
                # a full burst straight into a provider that has just said "too many".
                self._tokens = min(self._tokens, 1.0)
                self._updated = until


def parse_retry_after(value: str | None, now: float | None = None, maximum: float = 3600.0) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), clamped to `maximum`.

    Returns None when the header is absent or unreadable, so callers can fall back to their own default.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:  # RFC 9110 dates are always GMT
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), maximum)
