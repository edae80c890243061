"""The embedded worker under gunicorn (the Procfile's web command, WORKER_MODE=embedded).

Exactly one web process runs it, whatever WEB_CONCURRENCY is (per SQLite file; per PostgreSQL
database and machine), and when that process dies another takes over.
"""

from __future__ import annotations

import os
import re
import signal

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from tests.e2e.test_operations import post
from tests.fixtures import stripe_objects as so
from tests.waiting import wait_for
from webhook_app.config import normalize_database_url
from webhook_app.models import Notification

pytestmark = pytest.mark.e2e

STARTED = re.compile(r"embedded worker started in this web process \(pid (\d+)")
STANDBY = re.compile(r"embedded worker on standby: another web process runs it \(pid (\d+)")


def pids(pattern: re.Pattern[str], text: str) -> list[int]:
    return [int(pid) for pid in pattern.findall(text)]


def sent_messages(database_url: str) -> int:
    engine = create_engine(normalize_database_url(database_url))
    try:
        with Session(engine) as s:
            return s.scalar(select(func.count()).select_from(Notification).where(Notification.status == "sent")) or 0
    finally:
        engine.dispose()


def fail_an_invoice(app, stripe_standin, number: int) -> None:
    inv = so.invoice(invoice_id=f"in_embedded_{number}", customer=f"cus_embedded_{number}", amount_due=4900)
    stripe_standin.invoices[inv["id"]] = inv
    assert post(app.url, so.event("invoice.payment_failed", inv)).status_code == 200


def test_on_sqlite_exactly_one_web_process_runs_the_embedded_worker(live_app, sqlite_url, stripe_standin):
    app = live_app(sqlite_url, WEB_CONCURRENCY="3")
    wait_for(
        lambda: len(pids(STARTED, app.logs())) + len(pids(STANDBY, app.logs())) == 3,
        timeout=20,
        what="each of the three web processes to start or stand by",
    )
    [runner] = pids(STARTED, app.logs())
    standby = pids(STANDBY, app.logs())
    assert len(standby) == 2 and runner not in standby

    fail_an_invoice(app, stripe_standin, 1)
    wait_for(lambda: sent_messages(sqlite_url) == 1, timeout=20, what="the embedded worker to send")

    # The runner dies (a crash; a gunicorn recycle ends it the same way): another process takes over
    # within seconds (a standby, or the one gunicorn starts in its place), and the rest stand by.
    os.kill(runner, signal.SIGKILL)
    wait_for(lambda: len(pids(STARTED, app.logs())) == 2, timeout=20, what="another process to take over")
    successor = pids(STARTED, app.logs())[1]
    assert successor != runner
    wait_for(
        lambda: len(set(pids(STARTED, app.logs()) + pids(STANDBY, app.logs())) - {runner}) == 3,
        timeout=20,
        what="the replacement process to start or stand by",
    )

    fail_an_invoice(app, stripe_standin, 2)
    wait_for(lambda: sent_messages(sqlite_url) == 2, timeout=20, what="the new runner to send")
    assert len(pids(STARTED, app.logs())) == 2  # still one runner at a time


def test_on_postgresql_one_web_process_per_machine_runs_it(live_app, postgres_url, stripe_standin):
    app = live_app(postgres_url, WEB_CONCURRENCY="2")
    wait_for(
        lambda: len(pids(STARTED, app.logs())) + len(pids(STANDBY, app.logs())) == 2,
        timeout=20,
        what="each of the two web processes to start or stand by",
    )
    assert len(pids(STARTED, app.logs())) == 1
    fail_an_invoice(app, stripe_standin, 3)
    wait_for(lambda: sent_messages(postgres_url) == 1, timeout=20, what="the embedded worker to send")
