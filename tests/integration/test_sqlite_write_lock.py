"""On SQLite an idle worker never takes the write lock intake needs: it reads what is due (a
deferred transaction) and claims only when something is."""

from __future__ import annotations

import sqlite3
import threading

from sqlalchemy import select

from tests.conftest import WEBHOOK_SECRET, base_config
from tests.fixtures import stripe_objects as so
from webhook_app import create_app, migrate
from webhook_app.db import sqlite_path
from webhook_app.models import Event
from webhook_app.services import services
from webhook_app.worker import Worker


def writer_holding_the_lock(url: str) -> sqlite3.Connection:
    """Another process's view: a connection holding SQLite's write lock until it commits."""
    conn = sqlite3.connect(sqlite_path(url), isolation_level=None, timeout=0, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    return conn


def finishes_within(seconds: float, work) -> bool:
    done = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:
            failure.append(exc)
        done.set()

    threading.Thread(target=run, daemon=True).start()
    finished = done.wait(seconds)
    if failure:
        raise failure[0]
    return finished


def test_an_idle_worker_passes_without_the_write_lock(sqlite_url, clock, billing, messenger):
    app = create_app(base_config(sqlite_url), billing=billing, messenger=messenger, clock=clock)
    with app.app_context():
        svc = services()
        migrate.upgrade(svc.db)
        worker = Worker(svc)
        lock = writer_holding_the_lock(sqlite_url)
        try:
            # Upkeep included (the first pass runs it): with the lock held elsewhere, an IMMEDIATE
            # transaction would wait out the 15 s busy timeout.
            assert finishes_within(3, lambda: worker.run_once() == 0)
            with svc.db.reading() as s:
                assert s.scalars(select(Event)).all() == []
        finally:
            lock.rollback()
            lock.close()
        svc.db.dispose()


def test_a_due_event_is_claimed_once_the_writer_lets_go(sqlite_url, clock, billing, messenger):
    app = create_app(base_config(sqlite_url), billing=billing, messenger=messenger, clock=clock)
    with app.app_context():
        svc = services()
        migrate.upgrade(svc.db)
        inv = so.invoice()
        billing.put(inv)
        body, headers = so.signed(so.event("invoice.payment_failed", inv), WEBHOOK_SECRET)
        response = app.test_client().post("/webhooks/stripe", data=body, headers=headers)
        assert response.status_code == 200
        worker = Worker(svc)
        worker.upkeep(force=True)  # out of the way: this pass only claims
        lock = writer_holding_the_lock(sqlite_url)
        handled: list[int] = []
        released = threading.Timer(0.5, lock.rollback)
        released.start()
        try:
            # The claim waits for the write lock (busy timeout), then takes the event and its message.
            assert finishes_within(10, lambda: handled.append(worker.run_once()))
            assert handled == [2]
        finally:
            released.join()
            lock.close()
        svc.db.dispose()
