"""The embedded worker (`WORKER_MODE=embedded`): a worker on daemon threads inside the web process.

gunicorn runs WEB_CONCURRENCY processes and each imports the app, so each would start a worker. On
PostgreSQL that is fine (claims skip each other's rows). On SQLite it is not: there is one writer, and
every extra worker polls, claims and competes with intake for the same write lock. So on SQLite the
processes elect one runner through an advisory file lock beside the database (`<db>.worker.lock`):
the holder runs the worker; the others stand by and retry, so when the holder exits (a gunicorn
recycle, a crash) another process takes over within STANDBY_RETRY_SECONDS. The operating system drops
the lock with the process that held it, whatever way it ended.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from pathlib import Path

from webhook_app.db import sqlite_path
from webhook_app.services import Services
from webhook_app.worker import Worker

log = logging.getLogger(__name__)

STANDBY_RETRY_SECONDS = 2.0


def lock_path(database_url: str) -> Path | None:
    """The lock file electing the one embedded worker of a SQLite deployment (None: no election)."""
    path = sqlite_path(database_url)
    return path.with_name(path.name + ".worker.lock") if path is not None else None


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
    """Start the embedded worker on daemon threads: at once on PostgreSQL, once elected on SQLite."""
    worker = Worker(svc)
    path = lock_path(svc.db.url)
    if path is None:
        log.info("embedded worker started (pid %d)", os.getpid())
        target = worker.run_forever
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
        log.info("embedded worker started in this web process (pid %d; SQLite: the only one)", os.getpid())
        worker.run_forever()
    finally:
        os.close(fd)  # releases the lock: a standby process takes over
