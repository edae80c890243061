"""A thread-safe token bucket shared by every request an adapter makes to one provider.

Loops allows about 10 requests a second per team and Intercom meters each app in 10-second windows;
the worker sends from several threads, so the adapters take a token before every HTTP call instead of
finding the limit through 429s. When a 429 does arrive, `pause_for` stops *every* caller sharing the
bucket until the provider's Retry-After has passed, not only the thread that was refused.

Alone, the limit is per process. Where a database is available the app shares it (`share`, wired
by `services.share_rate_limits`): the bucket then takes reserved slots from `webhook_app.rate_slots`,
so every process using the same credential paces together, evenly and a little under the limit
(`SHARED_PACE`), and a 429's Retry-After holds all of them.
"""

from __future__ import annotations

import email.utils
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC
from typing import Protocol

# Shared pacing runs a little under the configured limit: a request's start drifts by a few
# milliseconds (thread wake-up, the network), and at exactly the limit that drift puts one request too
# many in some one-second window of the provider's meter, and a 429 costs a whole second.
SHARED_PACE = 0.95
# That margin is what late starts may use up: N + 1 slots (N the limit per second) span N intervals,
# 1/SHARED_PACE s, so while every request starts less than WINDOW_MARGIN (~53 ms) after its slot no
# one-second window of the provider sees more than N. Late starts beyond it (a stall that wakes several
# threads at once) crowd one window. A shared taker that wakes later than LATE_TOLERANCE (half the
# margin; the rest is left for the request's own way to the provider) moves every sharer's slots not
# yet taken on by the excess, so the requests after it stay within the margin of the late one.
WINDOW_MARGIN = 1.0 / SHARED_PACE - 1.0
LATE_TOLERANCE = WINDOW_MARGIN / 2
# A 429 without a Retry-After while pacing evenly is one request too many in one window (a late
# start): room comes back when that window's oldest request ages out, about a slot later, not after a
# whole second. The hold starts at this many slots and doubles with each retry of the same request.
SHORT_HOLD_SLOTS = 2


class SlotStore(Protocol):
    """Where a shared limiter reserves its slots (`webhook_app.rate_slots.SharedSlots`)."""

    def take(self, interval: float) -> float | None:
        """Reserve the next slot `interval` after the last; seconds to wait, or None if unavailable."""
        ...

    def pause(self, seconds: float) -> None:
        """Hold every sharer for `seconds`."""
        ...

    def push(self, seconds: float) -> None:
        """Move every sharer's next slot `seconds` later (a request started late)."""
        ...


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
        self.late_starts = 0  # shared slots woken up too late, that moved the next slots on
        self._shared: SlotStore | None = None

    def share(self, store: SlotStore) -> None:
        """Pace through `store` from now on, together with every other process using it."""
        self._shared = store

    @property
    def shared(self) -> bool:
        """Whether this bucket paces together with other processes."""
        return self._shared is not None

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
        """Block until a token (or a shared slot) is available and take it; returns the seconds waited."""
        if self._shared is None:
            return self._acquire_local()
        waited = 0.0
        while True:
            with self._lock:
                held = self._paused_until - self._clock()
                interval = 1.0 / (self.rate * SHARED_PACE)
            if held > 0:  # a 429 in this process: wait it out before reserving a slot
                self._sleep(held)
                waited += held
                continue
            delay = self._shared.take(interval)
            if delay is None:  # the shared state is unavailable: pace this process alone meanwhile
                return waited + self._acquire_local()
            if delay > 0:
                self._sleep_until_slot(delay, interval)
                waited += delay
            with self._lock:
                if self._clock() < self._paused_until:
                    continue  # a 429 arrived while this slot waited: take a new one after the pause
            return waited

    def _sleep_until_slot(self, delay: float, interval: float) -> None:
        """Sleep until a reserved shared slot; if woken too late, push the next slots on by the excess.

        The slot store never hands out a slot in the past, but a thread can still *start* late (the
        machine busy, the GIL held elsewhere) while the slots after it keep their times: late starts
        followed by on-time ones crowd one of the provider's windows. Moving the slots not yet taken on
        keeps the requests a second later out of this one's window, at the cost of the excess (at most
        one window's worth: a longer stall has left its window behind anyway).
        """
        slot = self._clock() + delay
        self._sleep(delay)
        late = self._clock() - slot
        if late > LATE_TOLERANCE and self._shared is not None:
            with self._lock:
                self.late_starts += 1
            self._shared.push(min(late - LATE_TOLERANCE, interval * self.rate))

    def throttle_hold(self, default: float, attempt: int = 1) -> float:
        """How long to hold every caller after a 429 that gave no Retry-After (`default`: the adapter's).

        Paced evenly through shared slots, the 429 means one request too many in one window: a couple
        of slots' hold, doubling with each `attempt` of the same request, up to `default`. Paced
        locally by a token bucket, whose bursts can fill a window, the whole `default`.
        """
        if self._shared is None:
            return default
        with self._lock:
            interval = 1.0 / (self.rate * SHARED_PACE)
        return min(default, SHORT_HOLD_SLOTS * interval * 2.0 ** (attempt - 1))

    def _acquire_local(self) -> float:
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
        if self._shared is not None:
            self._shared.pause(seconds)  # outside the lock: a database round trip


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
