"""The inbox's hot insert: the direct path to the database, with group commit.

Every acknowledged delivery waits for its row to be committed, so this is the webhook path's one
database write, and it is kept short:
- **Direct path.** One INSERT ... ON CONFLICT DO NOTHING, its SQL built once per dialect, executed on
  the pooled DB-API connection (psycopg prepares it after a few runs). Through SQLAlchemy's Connection
  the same insert cost more CPU than the rest of the acknowledgement together (docs/performance.md).
  The values still pass through the columns' own bind processors, so the row is the one the ORM
  would have stored.
- **Group commit.** Request threads of one process that arrive while a write is in flight queue up;
  when it ends, one of them writes everything queued in one transaction (one pool checkout, one
  commit: on PostgreSQL one WAL flush, on SQLite one turn of the write lock) and wakes the others.
  Alone, a delivery is written at once; under load, the batch grows by itself. Nothing is
  acknowledged before its batch commits: a failed batch answers 503 to each of its deliveries, and
  the billing systems retry.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

from webhook_app.db import Database
from webhook_app.models import Event

COLUMNS = (  # provider and event_id first: batches are ordered by them (see `_insert`)
    "provider",
    "event_id",
    "type",
    "livemode",
    "api_version",
    "occurred_at",
    "payload",
    "status",
    "attempts",
    "run_at",
    "last_error",
    "received_at",
)
MAX_BATCH = 64  # rows per transaction: a bound on how long the write lock is held at once


@dataclass(frozen=True)
class _Insert:
    sql: str
    columns: tuple[tuple[str, Callable[[Any], Any] | None], ...]  # (name, bind processor) in order
    sqlite: bool


_INSERTS: dict[str, _Insert] = {}


def _insert_statement(dialect: Dialect) -> _Insert:
    """The inbox INSERT for `dialect`, built once: its SQL text and each column's bind processor."""
    found = _INSERTS.get(dialect.name)
    if found is None:
        table = cast(Table, Event.__table__)  # a model's __table__ is a Table
        marker = "?" if dialect.paramstyle == "qmark" else "%s"
        sql = (
            f"INSERT INTO {table.name} ({', '.join(COLUMNS)}) VALUES ({', '.join(marker for _ in COLUMNS)}) "
            "ON CONFLICT (provider, event_id) DO NOTHING"
        )
        processors = tuple((name, table.c[name].type.bind_processor(dialect)) for name in COLUMNS)
        found = _INSERTS[dialect.name] = _Insert(sql, processors, dialect.name == "sqlite")
    return found


@dataclass(eq=False)  # compared by identity: two deliveries may carry equal rows
class _Slot:
    """One delivery's row, and what became of it."""

    params: tuple[Any, ...]
    done: bool = False
    inserted: bool = False
    error: BaseException | None = None


@dataclass
class InboxWriter:
    """Group commit of inbox rows for one database, shared by the request threads of a process."""

    db: Database
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _queue: list[_Slot] = field(default_factory=list)
    _writing: bool = False

    def store(self, values: dict[str, Any]) -> bool:
        """Insert one event row (`inbox.event_row`); whether it was new. Returns once committed."""
        statement = _insert_statement(self.db.engine.dialect)
        params = tuple(process(values[name]) if process else values[name] for name, process in statement.columns)
        slot = _Slot(params)
        with self._cond:
            self._queue.append(slot)
            while self._writing and not slot.done:
                self._cond.wait()
            if not slot.done:  # nobody is writing: this thread writes what is queued, its own row first
                others = [queued for queued in self._queue if queued is not slot]
                batch, self._queue = [slot, *others[: MAX_BATCH - 1]], others[MAX_BATCH - 1 :]
                self._writing = True
        if not slot.done:
            try:
                self._write(statement, batch)
            finally:
                with self._cond:
                    self._writing = False
                    self._cond.notify_all()
        if slot.error is not None:
            raise slot.error
        return slot.inserted

    def _write(self, statement: _Insert, batch: Sequence[_Slot]) -> None:
        """Insert the batch in one transaction; every slot gets its outcome (or the batch's error)."""
        error: BaseException | None = None
        inserted: dict[int, bool] = {}
        try:
            inserted = self._insert(statement, batch)
        except BaseException as exc:  # every delivery of the batch answers with it (503: retried)
            error = exc
        with self._cond:
            for slot in batch:
                slot.error = error
                slot.inserted = error is None and inserted[id(slot)]
                slot.done = True

    def _insert(self, statement: _Insert, batch: Sequence[_Slot]) -> dict[int, bool]:
        """{id(slot): inserted} for the batch, committed; raises SQLAlchemy's error on any DB-API error."""
        dialect = self.db.engine.dialect
        # One order for every process's batches (the unique key's): two batches holding the same
        # event ids wait for each other instead of deadlocking.
        ordered = sorted(batch, key=lambda slot: (slot.params[0], slot.params[1]))
        params: tuple[Any, ...] = ()
        try:
            raw = self.db.engine.raw_connection()  # the pool's checkout, with its pre-ping
        except dialect.loaded_dbapi.Error as exc:  # a failed connect comes unwrapped from here
            raise DBAPIError.instance(None, None, exc, dialect.loaded_dbapi.Error, dialect=dialect) from exc
        cursor = None
        try:
            cursor = raw.cursor()
            if statement.sqlite:
                cursor.execute("BEGIN IMMEDIATE")  # the write lock up front, as every write here (db.py)
            inserted = {}
            for slot in ordered:
                params = slot.params
                cursor.execute(statement.sql, params)
                inserted[id(slot)] = cursor.rowcount == 1
            raw.commit()
            return inserted
        except dialect.loaded_dbapi.Error as exc:
            with contextlib.suppress(Exception):  # a connection that is gone has nothing to roll back
                raw.rollback()
            if dialect.is_disconnect(exc, raw.dbapi_connection, cursor):
                raw.invalidate(exc)  # not back into the pool: the next checkout reconnects
            raise DBAPIError.instance(statement.sql, params, exc, dialect.loaded_dbapi.Error, dialect=dialect) from exc
        except BaseException:
            with contextlib.suppress(Exception):
                raw.rollback()
            raise
        finally:
            with contextlib.suppress(Exception):  # closing a cursor of a lost connection can raise too
                if cursor is not None:
                    cursor.close()
            raw.close()  # back to the pool (an invalidated connection is discarded)


_WRITERS: weakref.WeakKeyDictionary[Database, InboxWriter] = weakref.WeakKeyDictionary()
_WRITERS_LOCK = threading.Lock()


def writer(db: Database) -> InboxWriter:
    """The inbox writer of `db` (one per database and process)."""
    found = _WRITERS.get(db)
    if found is None:
        with _WRITERS_LOCK:
            found = _WRITERS.get(db)
            if found is None:
                found = _WRITERS[db] = InboxWriter(db)
    return found
