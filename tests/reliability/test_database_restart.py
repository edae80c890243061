"""Database restart during intake load: the PostgreSQL server is stopped and started while deliveries
arrive. Every delivery must be answered 503 (Stripe retries it) or stored: never 200 and lost. After
Stripe-style retries every event is stored, processed, and its message sent once.

This stops the whole PostgreSQL server on 127.0.0.1 (for about 3 seconds): anything else using it at
that moment sees its connections dropped. It runs only with --run-slow (make test-reliability).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session

from tests.conftest import PG_URL, WEBHOOK_SECRET, postgres_schema_url
from tests.fixtures import stripe_objects as so
from tests.reliability.support import Paced, Peek, figure
from tests.waiting import wait_for
from webhook_app.config import normalize_database_url
from webhook_app.models import Event, Notification

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.postgres]

EVENTS = int(os.environ.get("RESTART_EVENTS", "600"))
DOWN_SECONDS = 3.0
MAX_ATTEMPTS = 30  # Stripe retries for 3 days; here every ~0.25-2 s, at most this many times


def cluster() -> tuple[str, str]:
    """(version, name) of the local PostgreSQL cluster, or skip when this machine cannot restart it."""
    if not PG_URL or urlsplit(PG_URL).hostname not in ("127.0.0.1", "localhost"):
        pytest.skip("needs TEST_DATABASE_URL pointing at a PostgreSQL server on this machine")
    if not shutil.which("pg_ctlcluster") or not Path("/etc/postgresql").is_dir():
        pytest.skip("needs pg_ctlcluster (Debian's postgresql-common) to stop and start the server")
    versions = sorted(os.listdir("/etc/postgresql"))
    if not versions or os.geteuid() != 0:
        pytest.skip("needs a Debian PostgreSQL cluster and root to stop and start it")
    return versions[-1], "main"


@pytest.fixture
def restart_schema_url():
    """Like `postgres_url`, but the schema is dropped through a connection opened after the restart
    (a pooled one from before it is dead)."""
    if not PG_URL:
        pytest.skip("needs TEST_DATABASE_URL")
    schema = f"t_restart_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE SCHEMA "{schema}"')
    try:
        yield postgres_schema_url(PG_URL, schema)
    finally:
        _admin(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _admin(sql: str) -> None:
    engine = create_engine(normalize_database_url(PG_URL), isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    try:
        with engine.connect() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


def pg_ctl(action: str, version: str, name: str) -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, action],
        check=True,
        timeout=60,
        capture_output=True,
    )


def test_postgres_restart_during_intake_loses_no_delivery(stack, restart_schema_url):
    postgres_url = restart_schema_url
    version, name = cluster()
    stack.start_standins()
    events = []
    for i in range(EVENTS):
        inv = so.invoice(
            invoice_id=f"in_restart_{i:05d}", customer=f"cus_restart_{i:05d}", email=f"restart{i}@reliability.test"
        )
        stack.stripe.invoices[inv["id"]] = inv
        events.append(so.event("invoice.payment_failed", inv, event_id=f"evt_restart_{i:05d}"))
    app = stack.web(postgres_url)
    stack.worker(app, "restart", WORKER_CONCURRENCY=2)

    answers: Counter = Counter()
    answered_200: set[str] = set()
    lock = threading.Lock()
    local = threading.local()

    def deliver_like_stripe(event):
        """Deliver until a 2xx, backing off between attempts as Stripe does (compressed in time)."""
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        for attempt in range(1, MAX_ATTEMPTS + 1):
            body, headers = so.signed(event, WEBHOOK_SECRET)
            try:
                status = session.post(f"{app.url}/webhooks/stripe", data=body, headers=headers, timeout=15).status_code
            except requests.RequestException as exc:
                status = f"no answer ({type(exc).__name__})"
            with lock:
                answers[status] += 1
                if status == 200:
                    answered_200.add(event["id"])
            if status == 200:
                time.sleep(0.1)  # pace the load so that it spans the restart
                return
            time.sleep(min(2.0, 0.25 * attempt))
        raise AssertionError(f"{event['id']} was never accepted after {MAX_ATTEMPTS} attempts")

    clients = Paced(deliver_like_stripe, events, threads=6).start()
    down_at = None
    try:
        wait_for(lambda: len(answered_200) >= EVENTS // 4, timeout=120, what="a quarter of the load accepted")
        down_at = time.monotonic()
        pg_ctl("stop", version, name)
        time.sleep(DOWN_SECONDS)
    finally:
        pg_ctl("start", version, name)  # always: other tests (and other people) share this server
    up_seconds = time.monotonic() - down_at
    clients.join(timeout=300)

    peek = Peek(postgres_url)
    try:
        wait_for(lambda: _ready(peek), timeout=60, what="PostgreSQL to accept connections again")
        with Session(peek.engine) as s:
            stored = set(s.scalars(select(Event.event_id)))
        lost = answered_200 - stored
        wait_for(
            lambda: (
                peek.count(Event, Event.status == "done") >= EVENTS
                and peek.count(Notification, Notification.status == "sent") >= EVENTS
            ),
            timeout=240,
            what=f"all {EVENTS} events processed and messages sent",
        )
        events_by_status = peek.by_status(Event)
    finally:
        peek.dispose()

    per_invoice = Counter(m["body"]["dataVariables"]["invoiceId"] for m in stack.loops.messages)
    duplicates = sum(n - 1 for n in per_invoice.values())
    other = {k: v for k, v in answers.items() if k not in (200, 503)}
    figure(
        "database restart",
        f"PostgreSQL stopped and started ({up_seconds:.1f}s without it) during {EVENTS} events: "
        f"{sum(answers.values())} deliveries, {answers[200]} answered 200 (all stored), {answers[503]} "
        f"answered 503, {sum(other.values())} other; {len(lost)} answered 200 and lost; after retries "
        f"{len(stored)}/{EVENTS} stored, {events_by_status.get('done', 0)} processed, "
        f"{len(per_invoice)} messages, {duplicates} duplicates",
    )
    assert not other, f"answers other than 200 and 503: {other}"
    assert not lost, f"answered 200 but not stored: {sorted(lost)[:10]}"
    assert answers[503] > 0, "the restart did not hit the intake load: the scenario proved nothing"
    assert len(stored) == EVENTS and answers[200] == EVENTS
    assert events_by_status == {"done": EVENTS}, events_by_status
    assert len(per_invoice) == EVENTS and duplicates == 0


def _ready(peek: Peek) -> bool:
    try:
        peek.count(Event)
        return True
    except Exception:
        return False
