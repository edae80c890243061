"""Calling an external API under its rate limit: a shared token bucket, and backoff on 429s.

Throughput of a bulk run is bounded by the providers' limits, not by waiting on each call: several
threads call at once, each first takes a token from the bucket of that provider (Stripe: 100 req/s
live, 25 test, https://docs.stripe.com/rate-limits; Loops: ~10 req/s per team). When a provider still
answers 429, the `TransientError` carries a `retry_after`; the pause applies to the whole bucket, so
every thread backs off together instead of each one hammering the provider in turn. A 429 that came
without a Retry-After (`RateLimited.stated` false) is held as the bucket says (`throttle_hold`):
briefly when it paces evenly through shared slots, the adapter's default otherwise.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from webhook_app.adapters.ratelimit import TokenBucket
from webhook_app.errors import RateLimited, TransientError

log = logging.getLogger(__name__)


class Pacer:
    """`pacer(fn)` calls `fn()` after taking a token, retrying transient failures with backoff.

    `also_pause` are other buckets to hold on a 429 (an adapter's own bucket, so its other callers wait
    too). `backoff_max` caps every wait, including a provider's Retry-After (tests set it tiny).
    """

    def __init__(
        self,
        name: str,
        bucket: TokenBucket,
        *,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        also_pause: Iterable[TokenBucket] = (),
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.name = name
        self.bucket = bucket
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.also_pause = tuple(b for b in also_pause if b is not None and b is not bucket)
        self._sleep = sleep
        self._lock = threading.Lock()
        self.calls = 0
        self.throttled = 0  # answers that asked us to slow down (429, Retry-After)
        self.retried = 0  # retries of any transient failure

    def __call__(self, fn: Callable[[], Any], *, retry_errors: bool = True) -> Any:
        """`fn()` under the limit. A throttled call (429) is always retried after the provider's wait;
        other transient failures only with `retry_errors` (paged listings, where starting over costs
        more than waiting), else they are raised at once for the caller's own backoff (the worker's)."""
        attempt = 0
        while True:
            self.bucket.acquire()
            with self._lock:
                self.calls += 1
            try:
                return fn()
            except TransientError as exc:
                attempt += 1
                throttled = exc.retry_after is not None
                if attempt > self.max_retries or not (throttled or retry_errors):
                    raise
                if isinstance(exc, RateLimited) and not exc.stated:
                    # No Retry-After: under even pacing a short hold, not the adapter's whole default.
                    delay = self.bucket.throttle_hold(exc.retry_after or self.backoff_base, attempt)
                elif exc.retry_after:
                    delay = exc.retry_after  # the provider's own wait is honoured as given
                else:
                    delay = self.backoff_base * 2 ** (attempt - 1)
                # Jitter, so threads released together do not collide again on the same instant.
                delay = min(delay, self.backoff_max) * random.uniform(0.8, 1.0)
                with self._lock:
                    self.retried += 1
                    self.throttled += throttled
                log.info("%s: %s; retry %d/%d in %.2fs", self.name, exc, attempt, self.max_retries, delay)
                if throttled:
                    # The provider said "too many" for everyone sharing this limit: hold the bucket.
                    for bucket in (self.bucket, *self.also_pause):
                        bucket.pause_for(delay)
                else:
                    self._sleep(delay)
