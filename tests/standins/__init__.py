"""Stand-in HTTP servers for Stripe, Loops and Intercom, for end-to-end tests and benchmarks.

Each is a small Flask app speaking the slice of the real API the product uses, recording what it
received, with knobs for faults: latency, a failure rate (500s), 429s with Retry-After, a rate
limit, and timeouts (a request that hangs past the client's timeout, then is served anyway, as a real
API that was slow but did its work). `serve(app)` runs one on a real socket in a background thread.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from werkzeug.serving import make_server


@dataclass
class Faults:
    """Fault injection shared by the stand-ins."""

    latency: float = 0.0
    error_rate: float = 0.0  # share of requests answered 500
    throttle_rate: float = 0.0  # share of requests answered 429
    rate_limit: float | None = None  # requests per second before 429s
    seed: int = 7
    timeout_rate: float = 0.0  # share of requests that hang `hang_seconds`, then are served normally
    hang_seconds: float = 2.0
    counts: Counter = field(default_factory=Counter)  # verdicts given: "ok", "500", "429", "timeout"
    max_in_flight: int = 0  # the most requests inside their latency at once (client concurrency)
    _in_flight: int = 0
    _window: list = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _rng: random.Random = field(default=None)

    def __post_init__(self):
        self._rng = random.Random(self.seed)

    def _over_limit(self) -> bool:
        """Whether this request is one too many in the last second (counted as a 429 if so)."""
        if not self.rate_limit:
            return False
        with self._lock:
            now = time.monotonic()
            self._window = [t for t in self._window if now - t < 1.0]
            if len(self._window) >= self.rate_limit:
                self.counts["429"] += 1
                return True
            self._window.append(now)
            return False

    def verdict(self) -> int | None:
        """None to serve normally, else the status to fail with (after the configured latency)."""
        # The rate limit meters a request when it arrives, as a provider does: not after this stand-in's
        # own simulated latency, whose wake-up jitter on a loaded machine is no part of the client's pace.
        throttled = self._over_limit()
        if self.latency:
            with self._lock:
                self._in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self._in_flight)
            time.sleep(self.latency)
            with self._lock:
                self._in_flight -= 1
        if throttled:
            return 429
        with self._lock:
            roll = self._rng.random()
            verdict = (
                "429"
                if roll < self.throttle_rate
                else "500"
                if roll < self.throttle_rate + self.error_rate
                else "timeout"
                if roll < self.throttle_rate + self.error_rate + self.timeout_rate
                else "ok"
            )
            self.counts[verdict] += 1
        if verdict == "429":
            return 429
        if verdict == "500":
            return 500
        if verdict == "timeout":
            # The client gives up first; the work is still done, so a retry must not do it twice.
            time.sleep(self.hang_seconds)
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """A stand-in app running on 127.0.0.1:<port> until `stop()`."""

    def __init__(self, app, port: int | None = None):
        self.app = app
        self.port = port or free_port()
        self.server = make_server("127.0.0.1", self.port, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)


def serve(app, port: int | None = None) -> Served:
    """Serve `app` on a real socket in a background thread."""
    return Served(app, port)
