"""SQLite's write turn (`write_turn.py`): every writer of a database file, in every process, waits for
its turn instead of meeting the others in SQLite's busy handler, and gets it back however its
transaction ends."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import OperationalError

from tests.fixtures import stripe_objects as so
from webhook_app import inbox
from webhook_app.db import Database
from webhook_app.models import Event

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def no_busy_handler(db: Database) -> None:
    """Every new connection of `db` fails at once on a lock another connection holds."""

    @event.listens_for(db.engine, "connect")
    def _no_wait(dbapi_connection, _record):
        dbapi_connection.execute("PRAGMA busy_timeout=0")


def delivery(svc, n: int):
    body = so.event("invoice.payment_failed", so.invoice(invoice_id=f"in_turn_{n}"), event_id=f"evt_turn_{n}")
    return svc.providers["stripe"].incoming(json.dumps(body).encode())


def turn_of(db: Database):
    raw = db.engine.raw_connection()
    try:
        return raw.dbapi_connection.turn
    finally:
        raw.close()


def test_writers_of_two_processes_and_many_threads_never_meet_in_sqlites_busy_handler(svc, clock):
    # With SQLite's busy handler off, any two writers that met at the lock would fail "database is
    # locked". Transactions and inbox batches of two Databases on the file (as two processes) and
    # eight threads each all succeed: each waited for its turn.
    other = Database(svc.db.url)
    errors: list[BaseException] = []
    try:
        for db in (svc.db, other):
            db.engine.dispose()  # connections made from here on have no busy handler
            no_busy_handler(db)

        def work(db: Database, t: int) -> None:
            try:
                for i in range(15):
                    n = t * 100 + i
                    if i % 3:
                        inbox.store(db, "stripe", delivery(svc, n), clock.now())
                    else:
                        with db.session() as s:
                            s.execute(text("UPDATE events SET attempts = attempts + 1 WHERE id = 1"))
                            s.add(Event(**inbox.event_row("stripe", delivery(svc, n), clock.now())))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(db, t)) for t, db in enumerate([svc.db, other] * 8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        with svc.db.reading() as s:
            assert s.scalar(select(func.count()).select_from(Event)) == 16 * 15
    finally:
        other.dispose()


def test_the_turn_comes_back_however_a_transaction_ends(svc, clock):
    turn_of(svc.db).timeout = 0.5  # a turn that never came back fails the next writer after this
    with pytest.raises(RuntimeError), svc.db.session() as s:
        s.execute(text("SELECT 1"))
        raise RuntimeError("the unit of work failed: rolled back")
    conn = svc.db.engine.connect()
    conn.execute(text("SELECT 1"))
    conn.close()  # closed mid-transaction: the pool rolls it back
    raw = svc.db.engine.raw_connection()
    raw.dbapi_connection.take_turn()
    raw.dbapi_connection.close()  # closed outright, as a connection the pool discards
    raw.invalidate()
    with svc.db.session() as s:  # committed
        s.add(Event(**inbox.event_row("stripe", delivery(svc, 1), clock.now())))
    assert inbox.store(svc.db, "stripe", delivery(svc, 2), clock.now()) is True
    with svc.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Event)) == 2


def test_a_thread_writing_inside_its_own_write_transaction_fails_like_a_locked_database(svc):
    # Two write transactions of one thread cannot both hold SQLite's one write lock: the second fails
    # after the timeout, as "database is locked" did before, and the first still commits.
    turn_of(svc.db).timeout = 0.2
    with svc.db.session() as outer:
        outer.execute(text("UPDATE events SET attempts = 0"))
        with pytest.raises(OperationalError, match="database is locked"), svc.db.session() as inner:
            inner.execute(text("SELECT 1"))
    with svc.db.session() as s:  # the outer transaction gave its turn back when it committed
        s.execute(text("SELECT 1"))


def test_a_forked_process_waits_for_the_turn_its_parent_holds(svc):
    turn = turn_of(svc.db)
    turn.acquire()
    try:
        pid = os.fork()
        if pid == 0:  # the child: its own file and lock, so the parent's turn keeps it waiting
            code = 1
            try:
                got = threading.Event()
                threading.Thread(target=lambda: (turn.acquire(), got.set()), daemon=True).start()
                code = 0 if not got.wait(0.5) else 2
            finally:
                os._exit(code)
        time.sleep(0.1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0  # it did not get the turn while the parent held it
    finally:
        turn.release()
    turn.acquire()  # the parent's own turn is still usable
    turn.release()
