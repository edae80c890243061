"""Stand-in HTTP servers for Stripe, Loops and Intercom, for end-to-end tests and benchmarks.

Each is a small Flask app speaking the slice of the real API the product uses, recording what it
received, with knobs for faults: latency, a failure rate (500s), 429s with Retry-After, and a rate
limit. `serve(app)` runs one on a real socket in a background thread.
"""
from __future__ import annotations

import random
import socket
import threading
import time
from dataclasses import dataclass, field

from werkzeug.serving import make_server


@dataclass
class Faults:
    """Fault injection shared by the stand-ins."""

    latency: float = 0.0
    error_rate: float = 0.0          # share of requests answered 500
    throttle_rate: float = 0.0       # share of requests answered 429
    rate_limit: float | None = None  # requests per second before 429s
    seed: int = 7
    _window: list = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _rng: random.Random = field(default=None)

    def __post_init__(self):
        self._rng = random.Random(self.seed)

    def verdict(self) -> int | None:
        """None to serve normally, else the status to fail with (after the configured latency)."""
        if self.latency:
            time.sleep(self.latency)
        with self._lock:
            if self.rate_limit:
                now = time.monotonic()
                self._window = [t for t in self._window if now - t < 1.0]
                if len(self._window) >= self.rate_limit:
                    return 429
                self._window.append(now)
            roll = self._rng.random()
        if roll < self.throttle_rate:
            return 429
        if roll < self.throttle_rate + self.error_rate:
            return 500
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
