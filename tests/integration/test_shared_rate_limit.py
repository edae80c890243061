"""Provider limits shared through the database, and a worker whose HTTP concurrency pins no connections.

Two `Database` objects are two processes' worth of state: their own engines and connections, nothing
shared but the database. Counts are over about a second at a high rate, with tolerances, so the tests
stay fast and do not depend on the machine's load.
"""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import event

from tests.conftest import base_config
from tests.fixtures.inbox import store_stripe
from tests.fixtures.stripe_objects import event as stripe_event
from tests.fixtures.stripe_objects import invoice
from tests.standins import Faults, serve
from tests.standins.loops import LoopsStandIn
from tests.standins.stripe import StripeStandIn
from webhook_app import create_app, migrate
from webhook_app.adapters.ratelimit import SHARED_PACE, TokenBucket
from webhook_app.db import Database
from webhook_app.models import Notification
from webhook_app.rate_slots import SharedSlots, limit_key
from webhook_app.services import services
from webhook_app.worker import Worker

RATE = 60.0  # requests per second, all sharers together
KEY = limit_key("loops", "loops_test_key")


@pytest.fixture
def two_processes(database_url):
    """Two databases objects on one migrated database: what two worker processes have."""
    first = Database(database_url)
    first.allow_create()
    migrate.upgrade(first)
    second = Database(database_url)
    yield first, second
    first.dispose()
    second.dispose()


def shared_bucket(db: Database, rate: float = RATE) -> TokenBucket:
    bucket = TokenBucket(rate)
    bucket.share(SharedSlots(db, KEY))
    return bucket


def take_for(buckets: list[TokenBucket], seconds: float, threads_each: int = 3) -> list[float]:
    """Acquire from every bucket on several threads each for `seconds`; the times requests could start."""
    starts: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def run(bucket: TokenBucket) -> None:
        while True:
            bucket.acquire()
            now = time.monotonic()
            if now >= deadline:
                return
            with lock:
                starts.append(now)

    threads = [threading.Thread(target=run, args=(b,)) for b in buckets for _ in range(threads_each)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(starts)


def busiest_second(starts: list[float]) -> int:
    """The most requests in any one-second window (a provider's meter)."""
    most, j = 0, 0
    for i, start in enumerate(starts):
        while starts[j] <= start - 1.0:
            j += 1
        most = max(most, i - j + 1)
    return most


def test_two_processes_pace_together_to_the_shared_rate(two_processes):
    first, second = two_processes

    starts = take_for([shared_bucket(first), shared_bucket(second)], seconds=1.5)

    # Together they keep to the one limit (alone, each would take all of it: twice the rate) ...
    assert busiest_second(starts) <= RATE
    # ... and use most of it: paced evenly a little under the limit, no burst, no idle gaps.
    achieved = len(starts) / 1.5
    assert achieved >= 0.85 * RATE * SHARED_PACE, f"{achieved:.1f}/s"


def test_retry_after_from_one_process_holds_the_other(two_processes):
    first, second = two_processes
    a, b = shared_bucket(first), shared_bucket(second)
    a.acquire()
    b.acquire()

    a.pause_for(0.5)  # a 429 answered to the first process, Retry-After: 0.5 s
    started = time.monotonic()
    b.acquire()

    assert time.monotonic() - started >= 0.4
    assert a.pauses == 1


def test_a_late_start_in_one_process_moves_the_others_next_slot_on(two_processes):
    first, second = two_processes
    a, b = SharedSlots(first, KEY), SharedSlots(second, KEY)
    assert (a.take(0.05) or 0.0) <= 0  # idle: the first slot is now

    b.push(0.3)  # a request of the second process started 300 ms later than its slot
    wait = a.take(0.05)

    # The first process's next slot is one interval after its last, plus the push.
    assert wait is not None and 0.25 <= wait <= 0.35


def test_a_stripe_429_without_retry_after_holds_the_shared_limit_briefly(database_url):
    stripe = StripeStandIn(Faults())
    stripe.invoices["in_1"] = invoice(invoice_id="in_1", customer="cus_1", attempt_count=1)
    stripe.throttle["/v1/invoices/in_1"] = 1  # one 429, no Retry-After: Stripe's usual answer
    served = serve(stripe.app)
    app = create_app(base_config(database_url, STRIPE_API_BASE=served.url))
    try:
        with app.app_context():
            svc = services()
            migrate.upgrade(svc.db)
            billing = svc.providers["stripe"].billing
            assert billing is not None and billing.api.pacer.bucket.shared  # type: ignore[attr-defined]
            started = time.monotonic()

            assert billing.retrieve_invoice("in_1").id == "in_1"

            # Retried after a couple of slots (2/(25 x 0.95) s), not after Stripe's default second.
            assert time.monotonic() - started < 0.5
            assert billing.api.pacer.throttled == 1  # type: ignore[attr-defined]
    finally:
        app.extensions["webhook_app"].db.dispose()
        served.stop()


def test_a_database_without_the_table_leaves_each_process_pacing_alone(database_url):
    db = Database(database_url)
    db.allow_create()
    try:
        bucket = TokenBucket(RATE, burst=1)
        bucket.share(SharedSlots(db, KEY))  # not migrated: no rate_limits table

        started = time.monotonic()
        for _ in range(4):
            bucket.acquire()

        # Still paced (three waits of 1/RATE), no error.
        assert time.monotonic() - started >= 3 / RATE * 0.9
    finally:
        db.dispose()


def test_the_app_shares_the_email_tools_and_stripes_limiters(database_url):
    app = create_app(
        base_config(database_url, MESSAGING_PROVIDER="loops", LOOPS_API_KEY="loops_test_key", LOOPS_API_BASE="x")
    )
    with app.app_context():
        svc = services()
        assert svc.messenger.bucket.shared  # type: ignore[attr-defined]
        stripe_api = svc.providers["stripe"].billing.api  # type: ignore[union-attr]
        assert stripe_api.pacer.bucket.shared
        assert stripe_api.pacer.bucket.rate == 25.0  # Stripe's test-mode limit: all processes together


@pytest.mark.postgres
def test_worker_sends_on_many_threads_with_at_most_five_connections(postgres_url):
    """HTTP concurrency does not pin connections: 16 sending threads, more than 5 calls in flight at
    once, and never more than the pool's 5 PostgreSQL connections checked out."""
    # One Faults for both stand-ins, so `max_in_flight` counts every HTTP call in flight at once. No
    # latency while the events are handled: only sending is timed, and each call takes long enough
    # (0.2 s) that a slow machine's database work cannot serialise the threads before they overlap.
    upstream = Faults()
    stripe = StripeStandIn(upstream)
    loops = LoopsStandIn(faults=upstream)
    served = [serve(stripe.app), serve(loops.app)]
    stripe.base_url = served[0].url
    count = 40
    config = base_config(
        postgres_url,
        STRIPE_API_BASE=stripe.base_url,
        STRIPE_RATE_PER_SECOND=1000,
        MESSAGING_PROVIDER="loops",
        LOOPS_API_KEY=loops.api_key,
        LOOPS_API_BASE=f"{served[1].url}/api",
        LOOPS_TRANSACTIONAL_ID="tx_recovery",
        LOOPS_RATE_PER_SECOND=1000,
        WORKER_CONCURRENCY=16,
    )
    app = create_app(config)
    try:
        with app.app_context():
            svc = services()
            migrate.upgrade(svc.db)
            now = svc.clock.now()
            for i in range(count):
                inv = invoice(
                    invoice_id=f"in_pool_{i}",
                    customer=f"cus_pool_{i}",
                    email=f"pool{i}@example.com",
                    attempt_count=1,
                    next_payment_attempt=int(time.time()) + 3 * 86400,
                )
                stripe.invoices[inv["id"]] = inv
                store_stripe(svc.db, stripe_event("invoice.payment_failed", inv, event_id=f"evt_pool_{i}"), now)
            worker = Worker(svc, batch_size=100)
            while worker.process_events():
                pass

            pool = svc.db.engine.pool
            out = {"now": 0, "most": 0}
            lock = threading.Lock()

            def checkout(*_args):
                with lock:
                    out["now"] += 1
                    out["most"] = max(out["most"], out["now"])

            def checkin(*_args):
                with lock:
                    out["now"] -= 1

            event.listen(pool, "checkout", checkout)
            event.listen(pool, "checkin", checkin)
            upstream.max_in_flight = 0
            upstream.latency = 0.2
            worker.drain()  # WORKER_CONCURRENCY threads

            with svc.db.session() as s:
                statuses = [n.status for n in s.query(Notification)]
            assert statuses.count("sent") == count
            assert len(loops.messages) == count
            assert out["most"] <= 5
            assert svc.settings.database.per_process == 5
            assert upstream.max_in_flight > 5
    finally:
        app.extensions["webhook_app"].db.dispose()
        for s in served:
            s.stop()
