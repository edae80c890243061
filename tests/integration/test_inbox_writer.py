"""The inbox's group commit, on SQLite and PostgreSQL: deliveries arriving while a write is in flight
are committed together, each learns whether its row was new, and a failed batch fails every delivery
in it (so each is answered 503 and retried)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import event, func, select, text

from tests.fixtures import stripe_objects as so
from webhook_app import inbox, inbox_writer
from webhook_app.models import Event


def incoming(svc, n: int):
    body = so.event("invoice.payment_failed", so.invoice(invoice_id=f"in_group_{n}"), event_id=f"evt_group_{n}")
    return svc.providers["stripe"].incoming(json.dumps(body).encode())


def store_all(svc, numbers, clock) -> tuple[list, list[threading.Thread]]:
    """Store event `n` for each of `numbers`, one thread each; outcomes[i] is the i-th one's."""
    outcomes: list = [None] * len(numbers)

    def one(i: int, n: int) -> None:
        try:
            outcomes[i] = inbox.store(svc.db, "stripe", incoming(svc, n), clock.now())
        except BaseException as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=one, args=(i, n)) for i, n in enumerate(numbers)]
    for t in threads:
        t.start()
    return outcomes, threads


def block_inserts(svc):
    """Another session holding what an insert needs: SQLite's write lock, or PostgreSQL's table lock."""
    conn = svc.db.engine.connect()
    if svc.db.dialect == "postgresql":
        conn.execute(text("LOCK TABLE events IN EXCLUSIVE MODE"))
    else:
        conn.execute(text("SELECT 1"))  # the session's BEGIN IMMEDIATE took the write lock
    return conn


def wait_until(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_deliveries_waiting_on_a_write_are_committed_together(svc, clock):
    writer = inbox_writer.writer(svc.db)
    checkouts = []
    event.listen(svc.db.engine, "checkout", lambda *args: checkouts.append(1))
    blocker = block_inserts(svc)
    checkouts.clear()
    batches = writer.batches
    outcomes, threads = store_all(svc, range(20), clock)
    # One thread writes (and waits on the lock); the 19 others queue behind it.
    wait_until(lambda: len(writer._queue) == 19)
    blocker.rollback()
    blocker.close()
    for t in threads:
        t.join(timeout=20)
    assert outcomes == [True] * 20
    assert writer.batches - batches == 2  # the first row alone, then the 19 that queued meanwhile, in one
    # The second batch was already queued when the first ended: it ran on the same connection, with no
    # second checkout (and so no second pre-ping on PostgreSQL).
    assert len(checkouts) == 1
    with svc.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Event)) == 20


def test_each_delivery_learns_whether_it_was_new_even_within_one_batch(svc, clock):
    assert inbox.store(svc.db, "stripe", incoming(svc, 1), clock.now()) is True
    blocker = block_inserts(svc)
    outcomes, threads = store_all(svc, [1, 2, 2, 3, 1], clock)
    wait_until(lambda: len(inbox_writer.writer(svc.db)._queue) == 4)
    blocker.rollback()
    blocker.close()
    for t in threads:
        t.join(timeout=20)
    # 1 was stored before; 2 twice, both in the batch that queued: exactly one of the two is new.
    first, two_a, two_b, three, again = outcomes
    assert (first, three, again) == (False, True, False)
    assert sorted([two_a, two_b]) == [False, True]
    with svc.db.session() as s:
        ids = s.scalars(select(Event.event_id).order_by(Event.event_id)).all()
    assert ids == ["evt_group_1", "evt_group_2", "evt_group_3"]


def test_a_failed_batch_fails_every_delivery_in_it(svc, clock):
    with svc.db.engine.begin() as conn:
        conn.execute(text("DROP TABLE events"))
    outcomes, threads = store_all(svc, range(5), clock)
    for t in threads:
        t.join(timeout=20)
    from sqlalchemy.exc import SQLAlchemyError

    assert len(outcomes) == 5 and all(isinstance(outcome, SQLAlchemyError) for outcome in outcomes)


def test_the_writer_stores_every_column_of_an_event_row(svc, clock):
    row = inbox.event_row("stripe", incoming(svc, 9), clock.now())
    assert set(inbox_writer.COLUMNS) == set(row)


def test_a_server_that_cannot_be_reached_fails_the_delivery_with_a_database_error(svc, clock):
    # The intake answers 503 to a SQLAlchemyError; a failed connect must arrive as one, never as the
    # driver's own error (a 500).
    from sqlalchemy.exc import OperationalError

    from webhook_app.db import Database

    unreachable = Database("postgresql+psycopg://app@127.0.0.1:9/app")
    try:
        with pytest.raises(OperationalError):
            inbox.store(unreachable, "stripe", incoming(svc, 1), clock.now())
    finally:
        unreachable.dispose()


@pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_a_kept_connection_the_server_closed_is_replaced_and_the_delivery_stored(svc, clock):
    # A batch's connection is kept for the next batch without the pool's pre-ping; when the server has
    # closed it meanwhile (a restart), the insert runs once more on a fresh connection (it is idempotent).
    writer = inbox_writer.writer(svc.db)
    kept = svc.db.engine.raw_connection()
    closed_pid = kept.dbapi_connection.info.backend_pid
    with svc.db.engine.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": closed_pid})
    writer._held = kept
    assert inbox.store(svc.db, "stripe", incoming(svc, 7), clock.now()) is True
    # The fresh connection is the one kept now.
    assert writer._held is not None and writer._held.dbapi_connection.info.backend_pid != closed_pid
    with svc.db.session() as s:
        assert s.scalars(select(Event.event_id)).all() == ["evt_group_7"]


def test_deliveries_one_after_another_are_written_on_one_kept_connection(svc, clock):
    # On PostgreSQL each checkout runs the pool's pre-ping, a round trip: a lone delivery took two
    # round trips (and twice the CPU) when its connection went back to the pool after every batch.
    writer = inbox_writer.writer(svc.db)
    checkouts = []
    event.listen(svc.db.engine, "checkout", lambda *args: checkouts.append(1))
    batches = writer.batches
    for n in range(5):
        assert inbox.store(svc.db, "stripe", incoming(svc, n), clock.now()) is True
    assert writer.batches - batches == 5  # one at a time, each its own batch
    assert len(checkouts) == 1  # the first batch's; the four after it ran on the connection it kept
    with svc.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Event)) == 5


@pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_after_a_failed_batch_the_connection_goes_back_to_the_pool_out_of_autocommit(svc, clock):
    # The writer's connection runs in autocommit while it keeps it; the pool lends connections for
    # transactions, so the one a failed batch gives back must not be in autocommit.
    writer = inbox_writer.writer(svc.db)
    assert inbox.store(svc.db, "stripe", incoming(svc, 1), clock.now()) is True
    assert writer._held is not None
    kept = writer._held.dbapi_connection
    assert kept.autocommit is True
    checked_in = []
    event.listen(svc.db.engine, "checkin", lambda dbapi_connection, record: checked_in.append(dbapi_connection))
    with svc.db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE events RENAME TO events_away"))
    checked_in.clear()
    from sqlalchemy.exc import SQLAlchemyError

    with pytest.raises(SQLAlchemyError):
        inbox.store(svc.db, "stripe", incoming(svc, 2), clock.now())
    assert writer._held is None
    assert checked_in == [kept]  # back in the pool, open, for the next transaction
    assert not kept.closed and kept.autocommit is False
    with svc.db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE events_away RENAME TO events"))
    # And the writer carries on, on a connection in autocommit again.
    assert inbox.store(svc.db, "stripe", incoming(svc, 3), clock.now()) is True
    assert writer._held is not None and writer._held.dbapi_connection.autocommit is True
    with svc.db.session() as s:
        assert s.scalars(select(Event.event_id).order_by(Event.event_id)).all() == ["evt_group_1", "evt_group_3"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_inbox_writes_wait_for_the_write_turn_another_process_holds(svc, clock):
    # Another web process's transaction (a second Database on the file, as after a fork) holds the
    # database's write turn: the delivery waits for it and is stored when it ends, woken through
    # `<db>.writes.lock`, not by SQLite's busy handler, which sleeps.
    from webhook_app.db import Database, sqlite_path

    other = Database(svc.db.url)
    try:
        outcomes: list = []
        with other.session() as s:
            s.execute(text("SELECT 1"))  # BEGIN IMMEDIATE, after taking the turn
            waiting = threading.Thread(
                target=lambda: outcomes.append(inbox.store(svc.db, "stripe", incoming(svc, 5), clock.now()))
            )
            waiting.start()
            time.sleep(0.3)
            assert waiting.is_alive() and outcomes == []  # its turn has not come
        waiting.join(timeout=10)
        assert outcomes == [True]
        path = sqlite_path(svc.db.url)
        assert path is not None and path.with_name(path.name + ".writes.lock").exists()
    finally:
        other.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_checkpoints_run_after_the_batch_is_answered_not_inside_its_commit(svc, clock):
    # SQLite checkpoints inside the commit that grows its log past 1,000 pages, holding the write lock
    # while every queued delivery waits. The writer's connection never does; it checkpoints every
    # `checkpoint_rows` rows instead, once its batch has been answered.
    writer = inbox_writer.writer(svc.db)
    writer.checkpoint_rows = 5
    for n in range(12):
        assert inbox.store(svc.db, "stripe", incoming(svc, n), clock.now()) is True
    assert writer.checkpoints == 2  # after rows 5 and 10
    own = writer._held
    assert own is not None  # kept between batches, out of the pool
    cursor = own.cursor()
    assert cursor.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
    cursor.close()
    with svc.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Event)) == 12
