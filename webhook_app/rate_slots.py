"""A provider's rate limit shared by every process through the database: reserved request slots.

Each adapter owns its limiter (`adapters.ratelimit.TokenBucket`); where a database is available the
limiter keeps its state here instead of in the process, so two worker processes, or a worker and a
`campaign`, share one provider limit instead of each taking all of it.

The state is one row per (provider, credential) in `rate_limits`: `next_at`, the earliest start of the
next request, and `paused_until`, set from a provider's Retry-After. Taking a slot is one UPDATE
that moves `next_at` on by one interval and returns the slot it took; the row lock (PostgreSQL) or
BEGIN IMMEDIATE (SQLite) serializes concurrent takers, so slots never overlap whatever the number of
processes and threads. The caller then sleeps until its slot, outside any transaction: no database
connection is held while waiting. There is no burst: after an idle moment the first request goes at
once and the next ones one interval apart, so the provider's window never sees more than the limit.
A taker that wakes up too late for its slot moves the slots not yet taken on (`push`), so the requests
after it do not crowd into the same window.

On PostgreSQL the times are the database server's clock (`clock_timestamp()`), and only the *wait*
(slot minus the server's now) is used locally, so processes on machines whose clocks disagree still
pace together. SQLite is one machine, one clock.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from webhook_app.db import Database

log = logging.getLogger(__name__)

UNAVAILABLE_LOG_SECONDS = 60.0  # one warning a minute while the shared state cannot be reached

_CREATE = text(
    "INSERT INTO rate_limits (limit_key, next_at, paused_until) VALUES (:key, 0, 0) ON CONFLICT (limit_key) DO NOTHING"
)
_TAKE = {
    "postgresql": text(
        "WITH t AS (SELECT extract(epoch FROM clock_timestamp())::float8 AS now) "
        "UPDATE rate_limits SET next_at = GREATEST(rate_limits.next_at, rate_limits.paused_until, t.now) + :interval "
        "FROM t WHERE rate_limits.limit_key = :key "
        "RETURNING rate_limits.next_at - :interval - t.now"
    ),
    "sqlite": text(
        "UPDATE rate_limits SET next_at = MAX(next_at, paused_until, :now) + :interval "
        "WHERE limit_key = :key RETURNING next_at - :interval - :now"
    ),
}
_PAUSE = {
    "postgresql": text(
        "UPDATE rate_limits SET paused_until = GREATEST(paused_until, "
        "extract(epoch FROM clock_timestamp())::float8 + :seconds) WHERE limit_key = :key"
    ),
    "sqlite": text("UPDATE rate_limits SET paused_until = MAX(paused_until, :now + :seconds) WHERE limit_key = :key"),
}

# Slots already reserved keep their times; the ones not yet taken move on (`TokenBucket`: a late start).
_PUSH = text("UPDATE rate_limits SET next_at = next_at + :seconds WHERE limit_key = :key")


def limit_key(provider: str, credential: str | None) -> str:
    """The row of one provider limit: the provider and a digest of its credential (never the credential).

    Two deployments with different keys never share a row; processes using the same key always do.
    """
    digest = hashlib.sha256((credential or "").encode()).hexdigest()[:24]
    return f"{provider}:{digest}"


class SharedSlots:
    """The shared state of one provider limit (`TokenBucket.share` takes one).

    `take` and `pause` return None / do nothing when the database cannot be reached (not migrated yet,
    restarting): the limiter then paces this process alone until it can.
    """

    def __init__(self, db: Database, key: str):
        self.db = db
        self.key = key
        self._created = False
        self._lock = threading.Lock()
        self._warned_at = float("-inf")

    def take(self, interval: float) -> float | None:
        """Reserve the next slot, `interval` seconds after the previous one; returns the seconds to wait
        before using it (<= 0: now), or None when the shared state is unavailable."""
        try:
            self._create_once()
            with self._transaction() as conn:
                wait = conn.execute(
                    _TAKE[self.db.dialect], {"key": self.key, "interval": interval, "now": time.time()}
                ).scalar_one()
            return float(wait)
        except SQLAlchemyError as exc:
            self._unavailable(exc)
            return None

    def pause(self, seconds: float) -> None:
        """Hold every process's next slot until `seconds` from now (a longer pause already set wins)."""
        try:
            self._create_once()
            with self._transaction() as conn:
                conn.execute(_PAUSE[self.db.dialect], {"key": self.key, "seconds": seconds, "now": time.time()})
        except SQLAlchemyError as exc:
            self._unavailable(exc)

    def push(self, seconds: float) -> None:
        """Move every process's next slot `seconds` later: a request started that much too late."""
        try:
            self._create_once()
            with self._transaction() as conn:
                conn.execute(_PUSH, {"key": self.key, "seconds": seconds})
        except SQLAlchemyError as exc:
            self._unavailable(exc)

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """One statement's transaction. On PostgreSQL in autocommit: the UPDATE is its own transaction
        (its row lock still serializes takers), one round trip instead of BEGIN, UPDATE, COMMIT. SQLite
        keeps its BEGIN IMMEDIATE (`db.make_engine`)."""
        if self.db.dialect == "postgresql":
            with self.db.engine.connect() as conn:
                yield conn.execution_options(isolation_level="AUTOCOMMIT")
        else:
            with self.db.engine.begin() as conn:
                yield conn

    def _create_once(self) -> None:
        if self._created:
            return
        with self._lock:
            if not self._created:
                with self.db.engine.begin() as conn:
                    conn.execute(_CREATE, {"key": self.key})
                self._created = True

    def _unavailable(self, exc: SQLAlchemyError) -> None:
        now = time.monotonic()
        if now - self._warned_at >= UNAVAILABLE_LOG_SECONDS:
            self._warned_at = now
            log.warning(
                "shared rate limit %s unavailable, pacing this process alone: %s",
                self.key.split(":", 1)[0],
                type(exc).__name__,
            )
