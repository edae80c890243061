"""SQLite: every writer of a database file waits for its turn here, not in SQLite's busy handler.

SQLite lets one connection write at a time. A connection that asks for the write lock while another
holds it waits in SQLite's busy handler, which sleeps 1, 2, 5, 10, 15, 20, 25, 25, 50, 50, 100 ms
between tries: it goes on sleeping long after the lock is free. With the embedded worker's
transactions and the inbox's batches in one process, a delivery that met one of those sleeps waited
tens of milliseconds for a lock free after one (docs/performance.md).

So every write on a SQLite file first takes the database's turn: the inbox writer's batches
(`inbox_writer.py`) and every transaction that starts with BEGIN IMMEDIATE (`db.py`: the worker,
pages that write, commands). A turn is a lock for the threads of a process and an advisory lock
(`flock`) on `<database>.writes.lock` for the processes; releasing it wakes the next writer at once. A
program that does not take turns (the sqlite3 shell, say) still meets SQLite's busy handler, as before.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class TurnNotTaken(sqlite3.OperationalError):
    """This process's writers held the turn for longer than the timeout (like SQLite's "database is
    locked", which a busy handler that gave up raises)."""


class WriteTurn:
    """The turn to write one SQLite file: one thread of one process at a time.

    Not reentrant: a thread holding the turn that asks for it again waits out the timeout and gets
    TurnNotTaken, as a second write transaction of one thread got "database is locked" before.
    """

    def __init__(self, database: Path, timeout: float):
        self.path = database.with_name(database.name + ".writes.lock")
        self.timeout = timeout
        self._pid = -1  # the process `_threads` and `_file` belong to
        self._threads = threading.Lock()
        self._file = -1
        self._opening = threading.Lock()

    def acquire(self) -> None:
        """Wait for the turn (at most `timeout` for this process's other writers); TurnNotTaken if not."""
        self._for_this_process()
        if not self._threads.acquire(timeout=self.timeout):
            raise TurnNotTaken(f"database is locked: no turn to write within {self.timeout:g} s")
        try:
            # Another process's writer holds this only while it writes; one that dies releases it.
            fcntl.flock(self._file, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise

    def release(self) -> None:
        """Hand the turn to the next writer (of this process or another)."""
        try:
            fcntl.flock(self._file, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def _for_this_process(self) -> None:
        # A forked child shares its parent's open file, and with it the parent's flock: it needs its
        # own file, and a thread lock no thread of the parent may have held at the fork.
        pid = os.getpid()
        if self._pid != pid:
            with self._opening:
                if self._pid != pid:
                    self._threads = threading.Lock()
                    self._file = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                    self._pid = pid  # last: another thread uses the two above only once it sees this


class TurnTakingConnection(sqlite3.Connection):
    """A sqlite3 connection whose write transactions hold their database's turn: `db.py` takes it
    before BEGIN IMMEDIATE (`take_turn`), and the transaction's end, however it ends, gives it back."""

    turn: WriteTurn | None = None  # set on connect; None for an in-memory database
    _holding = False

    def take_turn(self) -> None:
        """Wait for the turn to write (before BEGIN IMMEDIATE)."""
        if self.turn is not None and not self._holding:
            self.turn.acquire()
            self._holding = True

    def give_turn(self) -> None:
        """Give the turn back, if this connection holds it."""
        if self._holding:
            self._holding = False
            assert self.turn is not None
            self.turn.release()

    @contextmanager
    def turn_for_statement(self) -> Iterator[None]:
        """The turn for one statement run in autocommit (an inbox batch), which is its own transaction."""
        self.take_turn()
        try:
            yield
        finally:
            self.give_turn()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.give_turn()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.give_turn()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.give_turn()
