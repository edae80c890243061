"""The embedded worker (`WORKER_MODE=embedded`): the web process starts the worker beside itself.

gunicorn runs WEB_CONCURRENCY processes and each imports the app, so each would start a worker. One
per machine is enough, and more cost the web processes what they need most in a burst: CPU, and on
SQLite the single write lock. So the processes elect one runner through an advisory file lock: beside
the database for SQLite (`<db>.worker.lock`, whoever shares the file shares the lock), in the temporary
directory for a server database (one per database and machine, so each web dyno runs one). The holder
runs the worker; the others stand by and retry, so when the holder exits (a gunicorn recycle, a crash)
another process takes over within STANDBY_RETRY_SECONDS. The operating system drops the lock with the
process that held it, whatever way it ended. More sending capacity than one process gives:
`WORKER_MODE=external` and as many worker processes as needed.

The elected web process runs the worker as its child process (`embedded.main`), not on threads of its
own. On threads the worker shared the web process's GIL: a delivery waited behind the worker's Python,
and on SQLite behind a worker transaction whose holder was itself waiting for the GIL. On a server
database the worker also runs at a lower scheduling priority (WORKER_NICE), so in a burst the cores go
to acknowledging first and the worker catches up in the lulls. Not on SQLite: there the worker's write
transactions hold the write turn every delivery waits for, and a low-priority holder that the
scheduler leaves waiting makes every delivery wait with it (a priority inversion; docs/performance.md
measured less saturated throughput and a worse worst round under `nice` on SQLite). The child reads
its parent's arrival count from a pipe on its stdin (the web process's deliveries wake it at once, and
feed the burst gate below); when the pipe closes, its web process stopped it or is gone (any way it
ended), and it stops after the item in hand. An in-memory SQLite database cannot be shared with
another process: there the worker runs on threads of the web process.

A burst of deliveries (a billing cycle) is when the web process is busiest and the worker has most to
do. Acknowledging comes first: providers time out and retry, while a message that leaves a minute
later loses nothing. So while its web process stores more than BURST_DELIVERIES_PER_SECOND, the
embedded worker narrows to one thread (still draining), and widens again when the burst has been over
for QUIET_SECONDS: a burst comes in waves, and a worker that widened in the lull between two would meet
the next wave with every thread busy. It starts narrowed, too: a worker that starts (or takes over)
during a burst finds a backlog. An external worker (`WORKER_MODE=external`) is not narrowed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from webhook_app.db import sqlite_path
from webhook_app.services import Services
from webhook_app.worker import Worker

log = logging.getLogger(__name__)

STANDBY_RETRY_SECONDS = 2.0
BURST_DELIVERIES_PER_SECOND = 20.0
SAMPLE_SECONDS = 0.5  # how often the arrival rate is re-measured
QUIET_SECONDS = 5.0  # how long arrivals stay under the threshold before the worker widens again
WORKER_NICE = 10  # on a server database, the worker process's niceness above its web process's
FORWARD_SECONDS = 0.05  # at most 20 arrival counts a second go down the pipe during a burst
CHECK_SECONDS = 1.0  # how soon, with no deliveries, the web process notices that its worker exited
CHILD_STOP_SECONDS = 10.0  # on `stop()`, how long the worker process may take to finish the item in hand
SWITCH_INTERVAL_SECONDS = 0.001  # sys.setswitchinterval where the worker runs on the web process's threads


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


def gated_worker(svc: Services) -> Worker:
    """A worker that narrows itself while its web process acknowledges a burst (`BurstGate`)."""
    worker = Worker(svc)
    worker.admit = BurstGate(svc)
    return worker


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


def start_embedded(svc: Services, config: Mapping[str, str] | None = None) -> EmbeddedWorker:
    """Start the embedded worker: its own process, started by the elected web process only (see the
    module doc); threads of this process for an in-memory database. `config`: the mapping this
    process's app was built from instead of the environment (`create_app(config)`), if it was; the
    worker process builds its app from the same."""
    embedded = EmbeddedWorker(svc, config)
    threading.Thread(target=embedded.run, name="embedded-worker", daemon=True).start()
    return embedded


class EmbeddedWorker:
    """The embedded worker as its web process sees it: elected or standing by, and `stop()`."""

    def __init__(self, svc: Services, config: Mapping[str, str] | None = None):
        self.svc = svc
        # The worker process's first line: its settings, which never go into an environment or a log.
        self.config_line = json.dumps(dict(config) if config is not None else None).encode() + b"\n"
        self.stopping = threading.Event()
        self.stopped = threading.Event()
        self._threads: Worker | None = None  # the worker on this process's threads (in-memory database)

    def run(self) -> None:
        """Run until `stop()` (or the process ends: this runs on a daemon thread)."""
        try:
            path = lock_path(self.svc.db.url)
            if path is None:
                self._run_on_threads()
            else:
                self._supervise_when_elected(path)
        finally:
            self.stopped.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the worker after the item in hand, and wait for it (at most `timeout`)."""
        self.stopping.set()
        self.svc.wake.set()
        if self._threads is not None:
            self._threads.stop()
        self.stopped.wait(timeout)

    def _run_on_threads(self) -> None:
        """Run the worker in this process, which now switches threads every SWITCH_INTERVAL_SECONDS (a
        request thread waits less for the GIL while a worker thread computes)."""
        self._threads = worker = gated_worker(self.svc)
        if self.stopping.is_set():
            return
        log.info("embedded worker started on threads of this process (pid %d)", os.getpid())
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
        worker.run_forever()

    def _supervise_when_elected(self, path: Path) -> None:
        announced = False
        while (fd := _try_lock(path)) is None:
            if not announced:
                log.info("embedded worker on standby: another web process runs it (pid %d)", os.getpid())
                announced = True
            if self.stopping.wait(STANDBY_RETRY_SECONDS):
                return
        try:
            while not self.stopping.is_set():
                self._run_child()
                self.stopping.wait(STANDBY_RETRY_SECONDS)  # a worker that exits at once: not restarted in a loop
        finally:
            os.close(fd)  # releases the lock: a standby process takes over

    def _run_child(self) -> None:
        """Start the worker process, feed it this process's arrival count until it exits or `stop()`."""
        svc = self.svc
        # Lowered before the imports: starting up is most of a second of CPU, which a takeover during a
        # burst would otherwise take from requests.
        nice = 0 if svc.db.dialect == "sqlite" else WORKER_NICE  # see the module doc
        code = f"import os; os.nice({nice}); from webhook_app.embedded import main; main()"
        child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
        assert child.stdin is not None
        log.info(
            "embedded worker started by this web process (pid %d; the only one here): worker process %d",
            os.getpid(),
            child.pid,
        )
        sent = -1
        try:
            child.stdin.write(self.config_line)
            while child.poll() is None and not self.stopping.is_set():
                if svc.arrivals != sent:
                    sent = svc.arrivals
                    child.stdin.write(b"%d\n" % sent)
                    child.stdin.flush()
                    time.sleep(FORWARD_SECONDS)
                if svc.wake.wait(CHECK_SECONDS):
                    svc.wake.clear()
        except OSError:  # a broken pipe: the child is gone, and its exit code says why
            pass
        finally:
            with contextlib.suppress(OSError):
                child.stdin.close()  # a child still running reads end-of-file: it stops after the item in hand
        if self.stopping.is_set():
            try:
                child.wait(CHILD_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                child.kill()  # what it had claimed is claimable again when its lease runs out
            return
        log.warning("embedded worker process %d exited (code %s); starting another", child.pid, child.wait())


def _follow_parent(svc: Services, worker: Worker, pipe: IO[bytes]) -> None:
    """Take the web process's arrival counts from `pipe`; stop the worker when the pipe closes.

    The first count is the web process's total so far: arrivals are counted from it, so the burst gate
    does not read a long-running web process's history as a burst."""
    first: int | None = None
    for line in pipe:
        count = int(line)
        if first is None:
            first = count
        svc.arrivals = count - first
        svc.wake.set()
    log.info("embedded worker: its web process stopped it or is gone; stopping after the item in hand")
    worker.stop()


def main() -> None:
    """The worker process a web process starts (`EmbeddedWorker._run_child`); not a command to run."""
    from webhook_app import create_app
    from webhook_app.config import load_dotenv
    from webhook_app.services import services

    pipe = sys.stdin.buffer
    config = json.loads(pipe.readline() or "null")  # see `EmbeddedWorker.config_line`
    if config is None:
        load_dotenv()  # as its web process did
    app = create_app(config)
    with app.app_context():
        svc = services()
    worker = gated_worker(svc)
    # The parent's process group gets Ctrl-C (`webhook-app run`) and Heroku's SIGTERM: stop after the
    # item in hand, as `webhook-app worker` does.
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    signal.signal(signal.SIGINT, lambda *_: worker.stop())
    threading.Thread(target=_follow_parent, args=(svc, worker, pipe), daemon=True).start()
    worker.run_forever()
