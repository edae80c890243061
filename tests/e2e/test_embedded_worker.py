"""The embedded worker under gunicorn (the Procfile's web command, WORKER_MODE=embedded).

Exactly one web process runs it (as its child process), whatever WEB_CONCURRENCY is (per SQLite file;
per PostgreSQL database and machine), and when that process dies its worker stops and another web
process takes over.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from tests.e2e.test_operations import post
from tests.fixtures import stripe_objects as so
from tests.waiting import wait_for
from webhook_app.config import normalize_database_url
from webhook_app.models import Notification

pytestmark = pytest.mark.e2e

STARTED = re.compile(r"embedded worker started by this web process \(pid (\d+)")
WORKER = re.compile(r"embedded worker started by this web process \(pid \d+; the only one here\): worker process (\d+)")
STANDBY = re.compile(r"embedded worker on standby: another web process runs it \(pid (\d+)")


def pids(pattern: re.Pattern[str], text: str) -> list[int]:
    return [int(pid) for pid in pattern.findall(text)]


def running(pid: int) -> bool:
    """Whether `pid` is a live process (an exited one whose parent has not reaped it is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def children(pid: int) -> set[int]:
    """The live child processes of `pid`."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(child) for child in (task / "children").read_text().split())
    return {child for child in found if running(child)}


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
    # The runner's worker is its one child process, at the web processes' priority (on SQLite a
    # lower one would leave deliveries waiting for the write turn behind it); the others start none.
    [worker] = pids(WORKER, app.logs())
    assert children(runner) == {worker}
    assert all(children(pid) == set() for pid in standby)
    assert os.getpriority(os.PRIO_PROCESS, worker) == os.getpriority(os.PRIO_PROCESS, runner)

    fail_an_invoice(app, stripe_standin, 1)
    wait_for(lambda: sent_messages(sqlite_url) == 1, timeout=20, what="the embedded worker to send")

    # The runner dies (a crash; a gunicorn recycle ends it the same way): another process takes over
    # within seconds (a standby, or the one gunicorn starts in its place), and the rest stand by.
    os.kill(runner, signal.SIGKILL)
    wait_for(lambda: len(pids(STARTED, app.logs())) == 2, timeout=20, what="another process to take over")
    successor = pids(STARTED, app.logs())[1]
    assert successor != runner
    wait_for(lambda: not running(worker), timeout=20, what="the dead runner's worker process to stop")
    assert children(successor) == {pids(WORKER, app.logs())[1]}
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
    [runner] = pids(STARTED, app.logs())
    [worker] = pids(WORKER, app.logs())
    assert children(runner) == {worker}
    wait_for(  # its first statement lowers it: a moment after the start is logged
        lambda: os.getpriority(os.PRIO_PROCESS, worker) == os.getpriority(os.PRIO_PROCESS, runner) + 10,
        timeout=5,
        what="the worker process to run at a lower priority than its web process",
    )
    fail_an_invoice(app, stripe_standin, 3)
    wait_for(lambda: sent_messages(postgres_url) == 1, timeout=20, what="the embedded worker to send")

    # The worker process dies (the OOM killer, a crash): its web process starts another.
    os.kill(worker, signal.SIGKILL)
    wait_for(lambda: len(pids(WORKER, app.logs())) == 2, timeout=20, what="the web process to start another worker")
    assert children(runner) == {pids(WORKER, app.logs())[1]}
    fail_an_invoice(app, stripe_standin, 4)
    wait_for(lambda: sent_messages(postgres_url) == 2, timeout=20, what="the new worker process to send")
