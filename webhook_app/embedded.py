"""The embedded worker (`WORKER_MODE=embedded`): a worker on daemon threads inside the web process.

gunicorn runs WEB_CONCURRENCY processes and each imports the app, so each would start a worker. One
per machine is enough, and more cost the web processes what they need most in a burst: CPU and the
GIL in every process, and on SQLite the single write lock. So the processes elect one runner through
an advisory file lock: beside the database for SQLite (`<db>.worker.lock`, whoever shares the file
shares the lock), in the temporary directory for a server database (one per database and machine, so
each web dyno runs one). The holder runs the worker; the others stand by and retry, so when the holder
exits (a gunicorn recycle, a crash) another process takes over within STANDBY_RETRY_SECONDS. The
operating system drops the lock with the process that held it, whatever way it ended. More sending
capacity than one process gives: `WORKER_MODE=external` and as many worker processes as needed.

A burst of deliveries (a billing cycle) is when the web process is busiest and the worker has most to
do. Acknowledging comes first: providers time out and retry, while a message that leaves a minute
later loses nothing. So while this process stores more than BURST_DELIVERIES_PER_SECOND, the embedded
worker narrows to one thread (still draining, at a fraction of the CPU), and widens again when the
burst has been over for QUIET_SECONDS: a burst comes in waves, and a worker that widened in the lull
between two would meet the next wave with every thread busy. It starts narrowed, too: a process that
starts (or takes over) during a burst finds a backlog. The process running it switches threads more
often (SWITCH_INTERVAL_SECONDS instead of Python's 5 ms): a request thread waits less for the GIL while
a worker thread computes. An external worker (`WORKER_MODE=external`) is not narrowed: it has its own
process.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from webhook_app.db import sqlite_path
from webhook_app.services import Services
from webhook_app.worker import Worker

log = logging.getLogger(__name__)

STANDBY_RETRY_SECONDS = 2.0
BURST_DELIVERIES_PER_SECOND = 20.0
SAMPLE_SECONDS = 0.5  # how often the arrival rate is re-measured
QUIET_SECONDS = 5.0  # how long arrivals stay under the threshold before the worker widens again
SWITCH_INTERVAL_SECONDS = 0.001  # sys.setswitchinterval in the process that runs the embedded worker


class BurstGate:
    """`Worker.admit` for the embedded worker: thread 0 always works; the others only once arrivals
    have stayed under `threshold` a second for `quiet_seconds`."""

    def __init__(
        self, svc: Services, threshold: float = BURST_DELIVERIES_PER_SECOND, quiet_seconds: float = QUIET_SECONDS
    ):
        self.svc = svc
        self.threshold = threshold
        self.quiet_seconds = quiet_seconds
        self._lock = threading.Lock()
        self._sampled_at = time.monotonic()
        self._sampled_count = svc.arrivals
        self._narrow_until = self._sampled_at + quiet_seconds  # a start may meet a burst

    def __call__(self, index: int) -> bool:
        if index == 0:
            return True
        now = time.monotonic()
        if now - self._sampled_at >= SAMPLE_SECONDS:
            with self._lock:
                elapsed = now - self._sampled_at
                if elapsed >= SAMPLE_SECONDS:
                    count = self.svc.arrivals
                    if (count - self._sampled_count) / elapsed > self.threshold:
                        self._narrow_until = now + self.quiet_seconds
                    self._sampled_at, self._sampled_count = now, count
        return now >= self._narrow_until


def lock_path(database_url: str) -> Path | None:
    """The lock file electing this machine's one embedded worker (None: an in-memory database)."""
    path = sqlite_path(database_url)
    if path is not None:
        return path.with_name(path.name + ".worker.lock")
    if database_url.startswith("sqlite"):
        return None  # in memory: each process has its own database anyway
    # Named by a digest of the URL: never the URL (or its password) in a file name.
    digest = hashlib.sha256(database_url.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"webhook-app-{digest}.worker.lock"


def _try_lock(path: Path) -> int | None:
    """The lock file's descriptor when this process now holds the lock; None when another process does."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def start_embedded(svc: Services) -> Worker:
    """Start the embedded worker on daemon threads, in the elected process only (see the module doc)."""
    worker = Worker(svc)
    worker.admit = BurstGate(svc)
    path = lock_path(svc.db.url)
    if path is None:
        log.info("embedded worker started (pid %d)", os.getpid())
        target = lambda: _run(worker)  # noqa: E731
    else:
        target = lambda: _run_when_elected(worker, path)  # noqa: E731
    threading.Thread(target=target, name="embedded-worker", daemon=True).start()
    return worker


def _run_when_elected(worker: Worker, path: Path) -> None:
    announced = False
    while not worker.stop_event.is_set():
        fd = _try_lock(path)
        if fd is not None:
            break
        if not announced:
            log.info("embedded worker on standby: another web process runs it (pid %d)", os.getpid())
            announced = True
        worker.stop_event.wait(STANDBY_RETRY_SECONDS)
    else:
        return
    try:
        log.info("embedded worker started in this web process (pid %d; the only one here)", os.getpid())
        _run(worker)
    finally:
        os.close(fd)  # releases the lock: a standby process takes over


def _run(worker: Worker) -> None:
    """Run the worker in this process, which now switches threads every SWITCH_INTERVAL_SECONDS."""
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    worker.run_forever()
