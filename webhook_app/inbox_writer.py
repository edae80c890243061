"""The inbox's hot insert: the direct path to the database, with group commit.

Every acknowledged delivery waits for its row to be committed, so this is the webhook path's one
database write, and it is kept short (each step's measured effect: docs/performance.md):
- **Direct path.** One INSERT ... ON CONFLICT DO NOTHING RETURNING, its SQL built once per dialect and
  batch size, executed on the DB-API connection in autocommit: the statement is its own transaction
  (on PostgreSQL one round trip, on SQLite one call). The values still pass through the columns' own
  bind processors, so the row is the one the ORM would have stored.
- **Group commit.** Request threads of one process that arrive while a write is in flight queue up;
  when it ends, the first of them writes everything queued in one statement and the others are woken
  with their outcome. Alone, a delivery is written at once; under load, the batch grows by itself.
  Nothing is acknowledged before its batch commits: a failed batch answers 503 to each of its
  deliveries, and the billing systems retry.
- **Connections.** The writer keeps its connection from one batch to the next. On PostgreSQL it is one
  of the pool's, kept checked out in autocommit: no checkout, so no pre-ping round trip and no
  autocommit switching per batch (a lone delivery took two round trips and twice the CPU before); a
  connection the server closed meanwhile is replaced and the idempotent insert run once more, and after
  a failed batch the connection goes back to the pool as the pool lends them (not in autocommit). On
  SQLite the writer has a connection of its own, whose commits never run SQLite's checkpoint (the
  writer runs one every CHECKPOINT_ROWS rows, after its batch is answered), and each batch waits for
  the database's write turn (`write_turn.py`) with the other writers of every process, instead of
  meeting them in SQLite's busy handler, which sleeps.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import PoolProxiedConnection

from webhook_app.db import Database
from webhook_app.models import Event

log = logging.getLogger(__name__)

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
CHECKPOINT_ROWS = 1000  # SQLite: a checkpoint after this many rows (about SQLite's own 1,000 pages)


@dataclass(frozen=True)
class _Insert:
    head: str  # INSERT INTO events (...) VALUES
    group: str  # one row's markers: (?, ?, ...)
    tail: str  # ON CONFLICT ... RETURNING ...
    columns: tuple[tuple[str, Callable[[Any], Any] | None], ...]  # (name, bind processor) in order
    sqlite: bool
    by_size: dict[int, str] = field(default_factory=dict, compare=False)

    def rows(self, count: int) -> str:
        """The INSERT of `count` rows in one statement, built once per size."""
        found = self.by_size.get(count)
        if found is None:
            found = self.by_size[count] = f"{self.head} {', '.join([self.group] * count)} {self.tail}"
        return found


_INSERTS: dict[str, _Insert] = {}


def _insert_statement(dialect: Dialect) -> _Insert:
    """The inbox INSERT for `dialect`, built once: its SQL text and each column's bind processor.

    It answers with the key of each row it inserted (RETURNING): an event id it does not name was
    there already (a duplicate delivery).
    """
    found = _INSERTS.get(dialect.name)
    if found is None:
        table = cast(Table, Event.__table__)  # a model's __table__ is a Table
        marker = "?" if dialect.paramstyle == "qmark" else "%s"
        found = _INSERTS[dialect.name] = _Insert(
            head=f"INSERT INTO {table.name} ({', '.join(COLUMNS)}) VALUES",
            group=f"({', '.join(marker for _ in COLUMNS)})",
            tail="ON CONFLICT (provider, event_id) DO NOTHING RETURNING provider, event_id",
            columns=tuple((name, table.c[name].type.bind_processor(dialect)) for name in COLUMNS),
            sqlite=dialect.name == "sqlite",
        )
    return found


@dataclass(eq=False)  # compared by identity: two deliveries may carry equal rows
class _Slot:
    """One delivery's row, and what became of it. Its thread waits on `turn` (held from the start):
    the writer releases it when the row is committed, or when this thread is to write next."""

    params: tuple[Any, ...]
    turn: Any = field(default_factory=threading.Lock)  # a threading.Lock (a factory, not a class)
    done: bool = False
    inserted: bool = False
    error: BaseException | None = None


@dataclass
class InboxWriter:
    """Group commit of inbox rows for one database, shared by the request threads of a process.

    One thread writes at a time; the others queue their rows and each sleeps on its own lock, so a
    committed batch wakes exactly its own threads (a shared condition would wake every waiter after
    every batch), and the first thread still queued is woken to write the next batch.
    """

    db: Database
    _mutex: threading.Lock = field(default_factory=threading.Lock)
    _queue: list[_Slot] = field(default_factory=list)
    _writing: bool = False
    _held: PoolProxiedConnection | None = None  # the last batch's connection, kept for the next
    batches: int = 0  # statements written (each one transaction): rows / batches is the group size
    checkpoint_rows: int = CHECKPOINT_ROWS  # SQLite: rows between two checkpoints (see `_checkpoint`)
    checkpoints: int = 0  # SQLite: checkpoints run
    _rows_since_checkpoint: int = 0

    def store(self, values: dict[str, Any]) -> bool:
        """Insert one event row (`inbox.event_row`); whether it was new. Returns once committed."""
        statement = _insert_statement(self.db.engine.dialect)
        params = tuple(process(values[name]) if process else values[name] for name, process in statement.columns)
        slot = _Slot(params)
        slot.turn.acquire()
        with self._mutex:
            queued = self._writing
            if queued:
                self._queue.append(slot)
            self._writing = True
        if queued:
            slot.turn.acquire()  # until committed, or until it is this thread's turn to write
        if not slot.done:
            with self._mutex:  # this thread writes what is queued, its own row first
                batch, self._queue = [slot, *self._queue[: MAX_BATCH - 1]], self._queue[MAX_BATCH - 1 :]
            checkpoint = False
            try:
                self._write(statement, batch)
                if statement.sqlite and self._rows_since_checkpoint >= self.checkpoint_rows:
                    checkpoint, self._rows_since_checkpoint = True, 0
            finally:
                with self._mutex:
                    if self._queue:
                        self._queue.pop(0).turn.release()  # the next writer (still `_writing`)
                    else:
                        self._writing = False
            if checkpoint:  # the batch is answered and the next one under way: only this delivery waits
                self._checkpoint()
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
        for slot in batch:
            slot.error = error
            slot.inserted = error is None and inserted[id(slot)]
            slot.done = True
            if slot is not batch[0]:
                slot.turn.release()  # its thread answers now (the writer's own slot is batch[0])

    def _insert(self, statement: _Insert, batch: Sequence[_Slot]) -> dict[int, bool]:
        """{id(slot): inserted} for the batch, committed; raises SQLAlchemy's error on any DB-API error.

        The batch is one statement, run in autocommit, where a statement is its own transaction: on
        PostgreSQL one round trip (psycopg would otherwise send BEGIN and COMMIT as two more), on SQLite
        one call that takes the write lock, inserts and commits (BEGIN IMMEDIATE and COMMIT would be
        two more, each a release of the GIL). A lone statement is safe from the deferred-transaction
        trap `db.py` avoids with BEGIN IMMEDIATE: it holds no snapshot before it asks for the write lock,
        so SQLite's busy handler waits for the lock as it does for BEGIN IMMEDIATE.
        """
        # One row per event key, in one order for every process's batches (the unique key's): two
        # batches holding the same event ids wait for each other instead of deadlocking.
        rows: dict[tuple[Any, Any], tuple[Any, ...]] = {}
        for slot in sorted(batch, key=lambda slot: (slot.params[0], slot.params[1])):
            rows.setdefault((slot.params[0], slot.params[1]), slot.params)
        sql = statement.rows(len(rows))
        params = tuple(value for row in rows.values() for value in row)
        raw, reused = self._connection()
        try:
            stored = self._execute(raw, statement, sql, params)
        except DBAPIError as exc:
            if not (reused and exc.connection_invalidated):
                raise
            # The connection kept from the last batch (not pinged) was gone, as after a database
            # restart: once more on a checked-out one. The insert is idempotent, so this is safe.
            raw, _ = self._connection()
            stored = self._execute(raw, statement, sql, params)
        # Each inserted key goes to the first slot that carried it; the rest of that key were duplicates.
        inserted: dict[int, bool] = {}
        for slot in batch:
            key = (slot.params[0], slot.params[1])
            inserted[id(slot)] = key in stored
            stored.discard(key)
        return inserted

    def _connection(self) -> tuple[PoolProxiedConnection, bool]:
        """The connection for a batch, and whether it is the one kept from the last batch.

        On PostgreSQL it is a checkout from the pool (with its pre-ping) the first time and after a
        failed batch. On SQLite the writer keeps a connection of its own (taken from the pool once, with
        the pool's settings, and detached from it) on which SQLite never checkpoints by itself: see
        `_checkpoint`.
        """
        raw, self._held = self._held, None
        if raw is not None:
            return raw, True
        dialect = self.db.engine.dialect
        try:
            raw = self.db.engine.raw_connection()  # the pool's checkout, with its pre-ping
        except dialect.loaded_dbapi.Error as exc:  # a failed connect comes unwrapped from here
            raise DBAPIError.instance(None, None, exc, dialect.loaded_dbapi.Error, dialect=dialect) from exc
        if dialect.name == "sqlite":
            raw.detach()  # this writer's own from now on: closing it closes it
            cursor = raw.cursor()
            cursor.execute("PRAGMA wal_autocheckpoint=0")
            cursor.close()
        return raw, False

    def release(self) -> None:
        """Give up the kept connection (on `Database.dispose`): back to the pool on PostgreSQL, closed on
        SQLite. A batch in flight keeps its own until it ends."""
        raw, self._held = self._held, None
        if raw is not None:
            self._give_back(raw)

    def _give_back(self, raw: PoolProxiedConnection) -> None:
        """Close `raw`: on PostgreSQL back to the pool, out of autocommit, as the pool lends connections
        (an invalidated one is discarded); on SQLite the writer's own connection is closed."""
        dbapi = raw.dbapi_connection
        with contextlib.suppress(Exception):  # a connection that is gone has no mode to set
            if dbapi is not None and self.db.dialect != "sqlite" and not getattr(dbapi, "closed", True):
                dbapi.autocommit = False
        with contextlib.suppress(Exception):  # a connection that failed to close is discarded by the pool
            raw.close()

    def _checkpoint(self) -> None:
        """SQLite: copy the write-ahead log back into the database file (PASSIVE: no writer waits).

        SQLite runs a checkpoint inside the commit that grows the log past 1,000 pages, and that
        commit's writer holds the write lock meanwhile: every delivery queued behind it waited (the
        p99 at a steady rate was 3-6 times the floor's; docs/performance.md). So the writer's own
        connection never checkpoints by itself, and every `checkpoint_rows` rows the thread that wrote
        the batch runs one here, after its batch is answered and the next writer has started. Other
        connections (the worker, commands) keep SQLite's own checkpoints.
        """
        try:
            raw = self.db.engine.raw_connection()
            try:
                cursor = raw.cursor()
                cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
                cursor.fetchall()
                cursor.close()
            finally:
                raw.close()
            self.checkpoints += 1
        except Exception as exc:  # the rows are committed: a checkpoint can wait for the next one
            log.warning("inbox checkpoint failed, retried after the next rows: %s", type(exc).__name__)

    def _execute(
        self, raw: PoolProxiedConnection, statement: _Insert, sql: str, params: tuple[Any, ...]
    ) -> set[tuple[Any, ...]]:
        """Run the batch's statement on `raw`; the keys it inserted. The connection is kept for the next
        batch (`_connection`), unless the statement failed: then, on PostgreSQL, it goes back to the pool
        out of autocommit, as the pool lends connections; on SQLite the writer's own is closed."""
        dialect = self.db.engine.dialect
        dbapi = raw.dbapi_connection
        assert dbapi is not None  # a checked-out connection holds its DB-API connection
        cursor = None
        keep = False
        try:
            if not statement.sqlite and not dbapi.autocommit:
                dbapi.autocommit = True  # psycopg: no BEGIN and COMMIT round trips; kept while held
            # SQLite: the database's write turn (write_turn.py), shared with every writer of the file.
            with dbapi.turn_for_statement() if statement.sqlite else contextlib.nullcontext():
                cursor = raw.cursor()
                cursor.execute(sql, params)
                # Reading the RETURNING rows to the end completes the statement, and so commits it.
                stored = {tuple(key) for key in cursor.fetchall()}
            self.batches += 1  # one writer at a time: no lock needed
            self._rows_since_checkpoint += len(stored)
            keep = True
            return stored
        except dialect.loaded_dbapi.Error as exc:
            with contextlib.suppress(Exception):  # a connection that is gone has nothing to roll back
                raw.rollback()
            gone = dialect.is_disconnect(exc, dbapi, cursor)
            if gone:
                raw.invalidate(exc)  # not back into the pool: the next checkout reconnects
            raise DBAPIError.instance(
                sql, params, exc, dialect.loaded_dbapi.Error, connection_invalidated=gone, dialect=dialect
            ) from exc
        except BaseException:
            with contextlib.suppress(Exception):
                raw.rollback()
            raise
        finally:
            with contextlib.suppress(Exception):  # closing a cursor of a lost connection can raise too
                if cursor is not None:
                    cursor.close()
            if keep:
                self._held = raw  # for the next batch, whichever thread writes it
            else:
                self._give_back(raw)


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
                db.on_dispose(found.release)
    return found
