"""Engine and session set-up for SQLite (embedded default) and PostgreSQL.

SQLite runs in WAL mode with a busy timeout, and every transaction that may write starts with BEGIN
IMMEDIATE: SQLite allows one writer, and taking the write lock up front makes a second writer wait
instead of failing half-way with SQLITE_BUSY on a read-to-write upgrade. Before BEGIN IMMEDIATE it
waits for the database's write turn (`write_turn.py`), which wakes it as soon as the writer before it
is done, where SQLite's busy handler would sleep on. Transactions
that only read (`Database.reading()`: the worker's "anything due?" polls, pages) start with a plain
deferred BEGIN, so they never hold the write lock that intake needs (WAL readers block nobody).

Only `webhook-app db upgrade` creates a SQLite file (`Database.allow_create`): any other command, or
the web process, pointed at a path with no database says so instead of silently starting an empty
one next to the real one. PostgreSQL pools are sized by DB_POOL_SIZE / DB_MAX_OVERFLOW (see the
README's connection budget).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from webhook_app.config import DatabaseSettings
from webhook_app.observability import scrub
from webhook_app.write_turn import TurnNotTaken, TurnTakingConnection, WriteTurn

SQLITE_BUSY_TIMEOUT_MS = 15_000
POOL_TIMEOUT_SECONDS = 5  # a thread waits this long for a pooled connection, then the request fails (503)
MISSING_SQLITE = "no database file"  # the start of the error a missing SQLite file raises
READ_ONLY = "webhook_app_read_only"  # execution option: this transaction only reads (SQLite: deferred BEGIN)


class DatabaseNotConfigured(SQLAlchemyError):
    """DATABASE_URL names no database this app can open (the settings problem says why)."""


def sqlite_path(url: str) -> Path | None:
    """The file a SQLite URL points at (absolute), or None for other databases and in-memory ones."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[-1] if "///" in url else ""
    path = path.split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path).resolve()


def where(url: str) -> str:
    """A description of the database for messages: the SQLite file, or host/name (never the password)."""
    if not url:
        return "DATABASE_URL (malformed)"
    path = sqlite_path(url)
    if path is not None:
        return str(path)
    if url.startswith("sqlite"):
        return "an in-memory SQLite database"
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path or ''}"


def make_engine(url: str, pool: DatabaseSettings | None = None, *, allow_create: Any = None) -> Engine:
    """Create an engine for `url` with the per-dialect settings this app relies on.

    `allow_create()` says whether a missing SQLite file may be created now (None: never).
    """
    if url.startswith("sqlite"):
        connect_args = {
            "check_same_thread": False,
            "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
            "factory": TurnTakingConnection,
        }
        engine = create_engine(url, connect_args=connect_args)
        _configure_sqlite(engine, sqlite_path(url), allow_create)
        return engine
    pool = pool or DatabaseSettings()
    return create_engine(
        url,
        pool_pre_ping=True,  # survive a database restart: stale pooled connections are replaced
        pool_size=pool.pool_size,
        max_overflow=pool.max_overflow,
        pool_timeout=POOL_TIMEOUT_SECONDS,
        connect_args={"connect_timeout": 5},
    )


def _configure_sqlite(engine: Engine, path: Path | None, allow_create: Any) -> None:
    # One turn per engine, shared by its connections; in memory there is one connection, nothing to share.
    turn = None if path is None else WriteTurn(path, SQLITE_BUSY_TIMEOUT_MS / 1000)

    @event.listens_for(engine, "do_connect")
    def _refuse_missing_file(_dialect: Any, _record: Any, _cargs: Any, _cparams: Any) -> None:
        # sqlite3 creates a missing file on connect: an empty database that looks "not migrated"
        # while the real one sits elsewhere. Only `db upgrade` may create it.
        if path is None or path.exists():
            return
        if allow_create is not None and allow_create():
            path.parent.mkdir(parents=True, exist_ok=True)
            return
        # A DBAPI error, so SQLAlchemy wraps it like any connection failure (OperationalError).
        raise sqlite3.OperationalError(f"{MISSING_SQLITE} at {path}")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy's "begin" event below.
        dbapi_connection.isolation_level = None
        dbapi_connection.turn = turn
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable in WAL mode across app crashes
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(READ_ONLY, False):
            conn.exec_driver_sql("BEGIN")
            return
        dbapi_connection = conn.connection.dbapi_connection
        try:
            dbapi_connection.take_turn()  # given back by the transaction's commit or rollback
        except TurnNotTaken as exc:  # raised like SQLite's own "database is locked"
            raise OperationalError("BEGIN IMMEDIATE", None, exc) from exc
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            dbapi_connection.give_turn()
            raise


class Database:
    """An engine plus a session factory; `session()` is a unit of work that commits or rolls back.

    The engine is made on first use, so a malformed DATABASE_URL never stops the app from being built
    (`doctor` and `/readyz` still answer and say what is wrong).
    """

    def __init__(self, url: str, pool: DatabaseSettings | None = None):
        self.url = url
        self.pool = pool or DatabaseSettings()
        self.create_allowed = False
        self._engine: Engine | None = None
        self._sessions: sessionmaker[Session] | None = None
        self._read_sessions: sessionmaker[Session] | None = None
        self._lock = threading.Lock()
        self._on_dispose: list[Callable[[], None]] = []  # connections kept outside the pool's care

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    if not self.url:
                        raise DatabaseNotConfigured("DATABASE_URL is malformed")
                    self._engine = make_engine(self.url, self.pool, allow_create=lambda: self.create_allowed)
        return self._engine

    @property
    def sessions(self) -> sessionmaker[Session]:
        if self._sessions is None:
            self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        return self._sessions

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A transaction that only reads: on SQLite it starts deferred, so it takes no write lock.

        For polls and pages; it is rolled back at the end, so anything that writes uses `session()`.
        """
        if self._read_sessions is None:
            self._read_sessions = sessionmaker(self.engine.execution_options(**{READ_ONLY: True}))
        session = self._read_sessions()
        try:
            yield session
        finally:
            session.rollback()
            session.close()

    @property
    def dialect(self) -> str:
        if not self.url:
            return "unknown"
        return "sqlite" if self.url.startswith("sqlite") else "postgresql"

    @property
    def where(self) -> str:
        """The SQLite file, or host/name (for messages; never the password)."""
        return where(self.url)

    def allow_create(self) -> None:
        """Let the next connection create a missing SQLite file (what `db upgrade` does)."""
        self.create_allowed = True

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: commit on success, roll back on any exception."""
        session = self.sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def ping(self) -> None:
        """Raise if the database cannot be reached."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def on_dispose(self, release: Callable[[], None]) -> None:
        """Run `release` on `dispose()`: for a connection kept checked out (the inbox writer's), which the
        pool's own dispose leaves open."""
        self._on_dispose.append(release)

    def dispose(self) -> None:
        """Close every connection: those kept outside the pool's care, then the pool's."""
        for release in self._on_dispose:
            release()
        if self._engine is not None:
            self._engine.dispose()


def describe_error(db: Database, exc: BaseException) -> tuple[str, str]:
    """(what is wrong, the fix) for a database failure, in one line each, without secrets or SQL."""
    if isinstance(exc, DatabaseNotConfigured) or not db.url:
        return (
            "DATABASE_URL is malformed",
            "set DATABASE_URL to postgres://user:password@host:5432/name or sqlite:///<absolute path>",
        )
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    first = (str(orig).strip().splitlines() or [orig.__class__.__name__])[0]
    if first.startswith(MISSING_SQLITE):
        return (
            f"no database at {db.where}",
            "run `webhook-app db upgrade` to create it, or point DATABASE_URL at the existing database",
        )
    if db.dialect == "sqlite":
        return (
            f"cannot open the SQLite database at {db.where}: {scrub(first)}",
            "check DATABASE_URL's path and that the directory exists and is writable",
        )
    return (
        f"the database at {db.where} is unreachable: {scrub(first)}"[:400],
        "check DATABASE_URL and that the database server is up and accepts connections",
    )
