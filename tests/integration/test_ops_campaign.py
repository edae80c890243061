"""`webhook-app campaign` against the Stripe and Loops stand-ins on real sockets, on SQLite and PostgreSQL.

The campaign lists every unpaid invoice, opens cases and puts one message per invoice into the same
notifications outbox the webhook flow uses; the worker's code sends them (in this process, for the
run). The scenario of issue 7: 250 open invoices for 200 customers across 3 pages -> 200 messages; a
rerun sends 0; an interrupted run's messages go out after their lease; dry-run and CSV send nothing;
429s are absorbed. The real Stripe SDK, Loops adapter and database run; only the providers are stand-ins.
"""

from __future__ import annotations

import csv
import io
import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from tests.fixtures import stripe_objects as so
from tests.integration.ops_env import OpsEnv, open_ops_env
from tests.standins.stripe import StripeStandIn
from webhook_app import dunning
from webhook_app.models import DunningCase, Notification
from webhook_app.ops.campaign import CSV_COLUMNS, CampaignOptions, run_campaign
from webhook_app.providers.stripe.translate import invoice_view
from webhook_app.worker import Worker

# Rates far above what the stand-ins need: the suite measures behaviour, not waiting.
FAST = dict(stripe_rate=5000, messenger_rate=5000, concurrency=8, progress_interval=3600)
PUBLIC_URL = "https://recover.example.test"


class Env(OpsEnv):
    def run(self, **options):
        echo = options.pop("echo", lambda line: None)
        # Stripe's 429s ask for seconds; the tests need not wait them out.
        self.svc.provider("stripe").billing.api.pacer.backoff_max = 0.005
        return run_campaign(
            self.svc, CampaignOptions(**{**FAST, **options}), echo=echo, progress_stream=io.StringIO(), tty=False
        )

    def notifications(self) -> list[Notification]:
        with self.svc.db.session() as s:
            return s.scalars(select(Notification).order_by(Notification.id)).all()


def open_env(database_url, clock, **overrides):
    return open_ops_env(database_url, clock, env_class=Env, **overrides)


@pytest.fixture
def env(database_url, clock):
    """On SQLite and PostgreSQL: for what depends on the database (claims, leases, cooldowns)."""
    environment, close = open_env(database_url, clock)
    yield environment
    close()


@pytest.fixture
def lite(sqlite_url, clock):
    """On SQLite only: for behaviour that does not depend on the database engine (HTTP, limits, output)."""
    environment, close = open_env(sqlite_url, clock)
    yield environment
    close()


def customer(n: int) -> str:
    return f"cus_{n:04d}"


def seed(stripe: StripeStandIn, customers: int = 200, doubles: int = 50) -> None:
    """`customers` customers with one open, failed invoice; the first `doubles` have a second one,
    listed last, so one customer's invoices sit on different pages (250 invoices = 3 pages of 100)."""
    n = 0
    for c in range(1, customers + 1):
        n += 1
        stripe.add_invoice(
            so.invoice(
                invoice_id=f"in_{n:05d}",
                customer=customer(c),
                email=f"{customer(c)}@example.com",
                amount_due=4900,
                attempt_count=2,
            )
        )
    for c in range(1, doubles + 1):
        n += 1
        stripe.add_invoice(
            so.invoice(
                invoice_id=f"in_{n:05d}",
                customer=customer(c),
                email=f"{customer(c)}@example.com",
                amount_due=1500,
                attempt_count=1,
            )
        )


def listing_pages(stripe: StripeStandIn) -> list[dict]:
    """Params of the campaign's full listings (not the per-customer re-reads)."""
    return [p for m, path, p in stripe.requests if m == "GET" and path == "/v1/invoices" and "customer" not in p]


def test_250_invoices_over_3_pages_make_200_messages_and_a_rerun_sends_none(env, clock):
    seed(env.stripe)

    report = env.run()

    pages = listing_pages(env.stripe)
    assert len(pages) == 3
    assert [p.get("starting_after") for p in pages] == [None, "in_00100", "in_00200"]
    assert all(p["status"] == "open" and p["collection_method"] == "charge_automatically" for p in pages)
    assert report.listed == 250 and report.customers == 200 and report.queued == 250
    assert report.sent == 200 and not report.errors
    emails = env.loops.emails()
    assert len(emails) == 200 and len(set(emails)) == 200  # one message per customer

    # A customer whose two invoices were on page 1 and page 3 gets one message naming both.
    first = next(m["body"] for m in env.loops.messages if m["body"]["email"] == "cus_0001@example.com")
    data = first["dataVariables"]
    assert data["invoiceCount"] == 2
    assert {i["invoiceId"] for i in data["invoices"]} == {"in_00001", "in_00201"}
    # The link is made at send time: our durable link (PUBLIC_URL is set), plus a fresh portal session.
    assert data["updatePaymentUrl"].startswith(f"{PUBLIC_URL}/r/")
    assert data["portalUrl"].startswith(f"{env.stripe.base_url}/p/session/")
    assert len(env.stripe.portal_sessions) == 200
    # The worker's message, step for step: the first of a sequence, with its template.
    assert (data["step"], data["messageKind"], data["isFinalNotice"]) == (0, "first", "false")
    assert first["transactionalId"] == "tx_recovery"

    rerun = env.run()
    assert rerun.sent == 0 and rerun.queued == 0
    assert rerun.skipped == {"cooldown (message sent)": 200}
    assert len(env.loops.messages) == 200


def test_after_the_cooldown_a_customer_gets_a_new_message(env, clock):
    seed(env.stripe, customers=3, doubles=0)
    env.run()
    first_keys = {m["key"] for m in env.loops.messages}
    clock.advance(days=2, hours=23)
    assert env.run().sent == 0

    clock.advance(hours=1, seconds=1)
    later = env.run()

    assert later.sent == 3
    again = env.loops.messages[-3:]
    assert {m["key"] for m in again}.isdisjoint(first_keys)  # a new message, a new idempotency key
    assert {m["body"]["dataVariables"]["messageKind"] for m in again} == {"reminder"}  # they were told once already


def test_sending_starts_before_every_customer_is_queued(env):
    # Enough customers that queueing them all (a few ms each) takes seconds, against the tens of ms of
    # one send: the order then holds on a loaded machine too (300 did not, under the full suite).
    seed(env.stripe, customers=1000, doubles=0)
    queued_at_first_send: list[int] = []

    def count_queued(message):
        if not queued_at_first_send:
            with env.svc.db.session() as s:
                queued_at_first_send.append(s.scalar(select(func.count(Notification.id))) or 0)

    env.loops.after_accept = count_queued
    report = env.run()

    # The first email went out while the campaign was still opening cases and queueing messages.
    assert report.sent == 1000 and report.queued == 1000 and not report.errors
    assert 0 < queued_at_first_send[0] < 1000
    assert len(set(env.loops.emails())) == 1000


# The simulated crash ends the sending threads, as the process dying would: pytest reports it.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_an_interrupted_run_leaves_its_messages_in_the_outbox_and_a_rerun_sends_them(env, clock):
    seed(env.stripe)
    env.loops.crash_after = 50

    env.run()  # the sending threads die with the "process"; what they held stays claimed
    assert len(env.loops.messages) == 50

    env.loops.revive()
    clock.advance(minutes=6)  # past the dead claims' lease (WORKER_LEASE_SECONDS, 2 minutes)
    report = env.run()

    assert report.queued == 0 and report.skipped == {"cooldown (message sent)": 50, "message scheduled": 150}
    assert report.outbox_sent >= 150  # invoice notices: some of those customers have two invoices
    emails = env.loops.emails()
    assert len(emails) == 200 and len(set(emails)) == 200  # nobody emailed twice, nobody missed
    assert {n.status for n in env.notifications()} == {"sent"}


# The simulated crash ends the sending threads, as the process dying would: pytest reports it.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_send_that_reached_loops_before_the_crash_is_not_emailed_again(env, clock):
    seed(env.stripe, customers=20, doubles=0)
    env.loops.crash_after = 5
    env.loops.crash_before_answer = False  # Loops accepts the 5th message, then the process dies

    env.run(concurrency=1)
    env.loops.revive()
    clock.advance(minutes=6)
    env.run()

    # The rerun sent the unrecorded 5th message again with the same idempotency key (and the same
    # link and created_at); Loops answered 409 instead of emailing a second time.
    emails = env.loops.emails()
    assert len(emails) == 20 and len(set(emails)) == 20
    assert env.loops.requests == 20 + 1  # 20 accepted, and the 5th's retry answered 409
    assert {n.status for n in env.notifications()} == {"sent"}


# The simulated crash ends the sending threads, as the process dying would: pytest reports it.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_rerun_during_the_crashed_runs_lease_leaves_its_customers_alone(env):
    seed(env.stripe, customers=30, doubles=0)
    env.loops.crash_after = 10

    env.run(concurrency=4)
    env.loops.revive()
    in_flight = [n.id for n in env.notifications() if n.status == "sending"]
    assert in_flight  # the dead run held some messages when it died

    report = env.run()  # same minute: their claims are still leased to the dead run

    assert report.queued == 0
    assert {n.id for n in env.notifications() if n.status == "sending"} == set(in_flight)
    assert len(env.loops.emails()) == 30 - len(in_flight)
    assert len(set(env.loops.emails())) == len(env.loops.emails())


def test_two_campaigns_running_at_once_message_each_customer_once(env):
    seed(env.stripe, customers=40, doubles=0)
    reports = []

    def run():
        with env.app.app_context():
            reports.append(env.run(concurrency=4))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    emails = env.loops.emails()
    assert len(emails) == 40 and len(set(emails)) == 40
    assert sum(r.queued for r in reports) == 40 and sum(r.sent for r in reports) == 40
    # Whatever one run queued, the other skipped (as scheduled, or in its cooldown if it came later).
    assert all(r.queued + sum(r.skipped.values()) == 40 for r in reports)


def test_dry_run_prints_and_csv_writes_links_but_neither_sends(lite, tmp_path):
    seed(lite.stripe)
    lines: list[str] = []

    dry = lite.run(dry_run=True, echo=lines.append)

    assert dry.targets == 200
    plans = [line for line in lines if line.startswith("would message")]
    assert len(plans) == 200
    assert any("cus_0001 (c***@example.com): 2 invoice(s), $64.00" in line for line in plans)
    assert lite.loops.requests == 0 and lite.stripe.portal_sessions == [] and lite.notifications() == []

    path = tmp_path / "links.csv"
    written = lite.run(csv_path=str(path))

    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        assert tuple(reader.fieldnames) == CSV_COLUMNS
    assert written.csv_rows == len(rows) == 250
    mine = [r for r in rows if r["customer_id"] == "cus_0001"]
    assert {r["invoice_id"] for r in mine} == {"in_00001", "in_00201"}
    assert {r["amount_due"] for r in mine} == {"49.00", "15.00"} and {r["currency"] for r in mine} == {"usd"}
    assert len({r["update_url"] for r in mine}) == 1 and mine[0]["update_url"].startswith(f"{PUBLIC_URL}/r/")
    assert lite.loops.requests == 0 and lite.notifications() == []
    # Nothing was sent, so nobody is in a cooldown: everyone is still due a message.
    assert lite.run(dry_run=True).targets == 200


def test_429s_from_stripe_and_loops_are_absorbed(lite):
    seed(lite.stripe, customers=30, doubles=0)
    lite.stripe.throttle["/v1/invoices"] = 3  # the listing page is refused three times
    lite.stripe.throttle["/v1/billing_portal/sessions"] = 5
    lite.loops.throttle = 4

    report = lite.run()

    assert report.sent == 30 and not report.errors
    assert report.throttled == 3 + 5 + 4
    assert len(set(lite.loops.emails())) == 30 and len(listing_pages(lite.stripe)) == 1 + 3
    assert "rate limits absorbed: 12 request(s) waited for the provider" in "\n".join(report.summary())


def test_per_customer_errors_are_counted_summarised_and_never_abort(lite):
    seed(lite.stripe, customers=40, doubles=0)
    lite.stripe.missing_customers = {customer(3), customer(20), customer(35)}
    lite.loops.reject_emails = {f"{customer(7)}@example.com", f"{customer(8)}@example.com"}

    report = lite.run()

    assert report.sent == 35
    assert report.errors == {"resource_missing": 3, "messenger rejected": 2}
    summary = "\n".join(report.summary())
    assert "errors: 5 (messenger rejected 2, resource_missing 3)" in summary
    assert "cus_0003: CustomerMissing: Stripe resource_missing" in summary

    # A rerun retries the rejected addresses only: Stripe no longer knows the other three customers
    # (their cases are closed), and everyone else is in their cooldown.
    again = lite.run()
    assert again.sent == 0 and again.errors == {"messenger rejected": 2}
    assert again.skipped == {"cooldown (message sent)": 35}
    assert again.excluded["case error in webhook_app"] == 3


def test_invoice_paid_between_listing_and_send_is_not_messaged(lite):
    seed(lite.stripe, customers=5, doubles=0)
    lite.stripe.settled_at_send = {customer(2)}

    report = lite.run()

    assert report.sent == 4 and report.skipped == {"paid meanwhile": 1}
    assert f"{customer(2)}@example.com" not in lite.loops.emails()


def test_cooldown_counts_the_workers_messages_and_closed_cases_are_left_out(env, clock):
    seed(env.stripe, customers=6, doubles=0)
    now = clock.now()
    invoice = {i["customer"]: invoice_view(i) for i in env.stripe.invoices.values()}
    svc = env.svc
    with svc.db.session() as s:
        dunning.record_failure(s, invoice[customer(1)], failed_at=now, now=now)  # its first message is due
        sent = dunning.record_failure(s, invoice[customer(2)], failed_at=now, now=now)
        s.flush()
        s.execute(
            update(Notification)
            .where(Notification.case_id == sent.id)
            .values(status="sent", sent_at=now - timedelta(days=1))
        )  # emailed yesterday
        dunning.open_case(s, invoice[customer(3)], now)
        dunning.close_case(s, "stripe", invoice[customer(3)].id, "canceled", "subscription canceled", now)

    report = env.run()

    assert report.skipped == {"message scheduled": 1, "cooldown (message sent)": 1}
    assert report.excluded == {"case canceled in webhook_app": 1}
    assert report.sent == 3
    # Customer 1's own first message was due: the run's outbox drain sent it (once), like the worker would.
    assert sorted(env.loops.emails()) == [f"{customer(n)}@example.com" for n in (1, 4, 5, 6)]


def test_only_attempted_invoices_count_and_limit_caps_the_run(lite):
    seed(lite.stripe, customers=12, doubles=0)
    lite.stripe.add_invoice(so.invoice(invoice_id="in_new", customer="cus_fresh", attempt_count=0))

    report = lite.run(limit=5)

    assert report.excluded == {"not attempted yet": 1}
    assert report.sent == 5 and report.skipped == {"over --limit": 7}
    assert len(lite.loops.messages) == 5


def test_sent_link_opens_a_portal_session_and_the_cases_count_the_message(lite):
    seed(lite.stripe, customers=1, doubles=1)
    lite.run()
    url = lite.loops.messages[0]["body"]["dataVariables"]["updatePaymentUrl"]

    response = lite.app.test_client().get(
        url.replace(PUBLIC_URL, ""), headers={"User-Agent": "Mozilla/5.0 (Macintosh) Firefox/130.0"}
    )

    assert response.status_code == 303
    assert response.headers["Location"].startswith(f"{lite.stripe.base_url}/p/session/")
    with lite.svc.db.session() as s:
        cases = s.scalars(select(DunningCase).order_by(DunningCase.invoice_id)).all()
        assert [(c.invoice_id, c.status, c.messages_sent) for c in cases] == [
            ("in_00001", "open", 1),
            ("in_00002", "open", 1),
        ]
        assert all(c.first_message_at is not None for c in cases)


def test_without_public_url_the_message_carries_a_fresh_portal_session(sqlite_url, clock):
    environment, close = open_env(sqlite_url, clock, PUBLIC_URL="")
    try:
        seed(environment.stripe, customers=3, doubles=0)
        report = environment.run()
        assert report.sent == 3
        urls = {m["body"]["dataVariables"]["updatePaymentUrl"] for m in environment.loops.messages}
        assert urls == {s["session"]["url"] for s in environment.stripe.portal_sessions}
        # An emailed session URL may be opened late: Stripe falls back to its login page.
        assert all(
            s["params"]["after_expiration"] == {"type": "customer_login"} for s in environment.stripe.portal_sessions
        )
        with environment.svc.db.session() as s:
            # Cases are opened all the same: a later payment lands in the recovery ledger.
            assert s.scalar(select(func.count()).select_from(DunningCase)) == 3
    finally:
        close()


def test_quiet_hours_hold_campaign_messages_in_the_outbox_until_morning(sqlite_url):
    from webhook_app.clock import FrozenClock

    clock = FrozenClock(datetime(2026, 3, 10, 23, 30))  # 23:30 UTC: night for a customer without a country
    environment, close = open_env(sqlite_url, clock, QUIET_HOURS="21-8")
    try:
        seed(environment.stripe, customers=3, doubles=0)

        report = environment.run()

        assert report.sent == 0 and report.deferred == 3 and environment.loops.messages == []
        assert all(
            n.status == "pending" and n.run_at == datetime(2026, 3, 11, 8, 0) for n in environment.notifications()
        )
        assert "waiting for the customer's quiet hours to end: 3" in "\n".join(report.summary())

        clock.advance(hours=8, minutes=30)  # 08:00 has passed
        Worker(environment.svc).run_once()

        assert sorted(environment.loops.emails()) == [f"{customer(n)}@example.com" for n in (1, 2, 3)]
        assert {m["body"]["dataVariables"]["messageKind"] for m in environment.loops.messages} == {"first"}
    finally:
        close()


def test_campaign_command_dry_run_limit_and_errors(lite):
    seed(lite.stripe, customers=8, doubles=0)
    runner = lite.app.test_cli_runner()

    dry = runner.invoke(args=["campaign", "--dry-run", "--stripe-rate", "1000", "--messenger-rate", "1000"])
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.count("would message") == 8
    assert "would send: 8 message(s); nothing was sent" in dry.stdout

    sent = runner.invoke(args=["campaign", "--limit", "3", "--stripe-rate", "1000", "--messenger-rate", "1000"])
    assert sent.exit_code == 0, sent.output
    assert "sent: 3" in sent.stdout
    assert "campaign: 3/3 customers" in sent.stderr  # plain progress lines when not a terminal
    assert len(lite.loops.messages) == 3

    both = runner.invoke(args=["campaign", "--dry-run", "--csv", "x.csv"])
    assert both.exit_code == 2 and "pick one" in both.output
    unknown = runner.invoke(args=["campaign", "--provider", "nosuch", "--dry-run"])
    assert unknown.exit_code == 2 and "--provider" in unknown.output
