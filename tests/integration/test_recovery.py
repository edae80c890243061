"""The recovery flow on real databases with fakes of our own Billing/Messenger protocols."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import event, select

from tests.fixtures import stripe_objects as so
from webhook_app.clock import from_unix
from webhook_app.errors import ConfigurationNeeded, CustomerMissing
from webhook_app.models import DunningCase, LedgerEntry, Notification
from webhook_app.worker import Worker


def all_rows(svc, model):
    with svc.db.session() as s:
        return s.scalars(select(model).order_by(model.id)).all()


def first_message(svc) -> Notification:
    """The episode's first notification (later reminders of the cadence wait for their day)."""
    with svc.db.session() as s:
        return s.scalars(select(Notification).where(Notification.step == 0)).one()


def ts(clock, **delta) -> int:
    """The test clock's now (plus `delta`) as a Stripe unix timestamp."""
    return int((clock.now() + timedelta(**delta) - from_unix(0)).total_seconds())


@pytest.fixture
def run(svc):
    return lambda: Worker(svc).run_once()


@pytest.mark.parametrize("api_version", [so.LEGACY, so.BASIL])
def test_failed_invoice_sends_one_message_with_a_recovery_link_and_the_amount(
    svc, deliver, run, billing, messenger, api_version
):
    inv = so.invoice(api_version=api_version, amount_due=4900, attempt_count=1)
    billing.put(inv)
    deliver(so.event("invoice.payment_failed", inv, api_version=api_version))
    run()
    [message] = messenger.messages
    data = message.data_variables()
    assert data["updatePaymentUrl"].startswith("https://recover.example.test/r/")
    assert data["portalUrl"] == "https://billing.stripe.test/p/session/bps_1"
    assert data["amountDue"] == "$49.00" and data["currency"] == "USD" and data["invoiceId"] == inv["id"]
    assert message.email == "ada@example.com"
    [case] = all_rows(svc, DunningCase)
    assert case.subscription_id == "sub_A"
    assert billing.sessions == [
        # Minted for the message: an emailed portal URL falls back to Stripe's login once it expires.
        {
            "customer": "cus_A",
            "idempotency_key": f"webhook-app-{svc.deployment_id()}-notification-1-portal",
            "for_email": True,
        }
    ]


def test_a_first_failure_writes_each_table_once_in_its_event_transaction(svc, deliver, billing):
    """The case, its whole sequence of messages and the event's mark: one statement each. On SQLite
    every statement of this transaction holds the database's write turn, which deliveries wait for."""
    inv = so.invoice(amount_due=4900, attempt_count=1)
    billing.put(inv)
    deliver(so.event("invoice.payment_failed", inv))
    transactions: list[list[str]] = [[]]

    def on_statement(_conn, _cursor, statement, *_args):
        transactions[-1].append(" ".join(statement.split()[:3]))

    def on_end(_conn):
        transactions.append([])

    listeners = [("before_cursor_execute", on_statement), ("commit", on_end), ("rollback", on_end)]
    for name, fn in listeners:
        event.listen(svc.db.engine, name, fn)
    try:
        assert Worker(svc).process_events() == 1
    finally:
        for name, fn in listeners:
            event.remove(svc.db.engine, name, fn)
    [handled] = [t for t in transactions if "INSERT INTO dunning_cases" in t]
    writes = [s for s in handled if not s.startswith(("BEGIN", "SELECT"))]
    assert writes == ["INSERT INTO dunning_cases", "INSERT INTO notifications", "UPDATE events SET"]
    assert len(handled) - len(writes) <= 2  # BEGIN IMMEDIATE (SQLite) and the case's locked read
    assert len(all_rows(svc, Notification)) > 1  # the cadence's messages, inserted together


def test_a_second_failed_attempt_on_the_same_invoice_sends_nothing_new(svc, deliver, run, billing, messenger, clock):
    inv = so.invoice(attempt_count=1)
    billing.put(inv)
    deliver(so.event("invoice.payment_failed", inv))
    run()
    retry = dict(inv, attempt_count=2)
    deliver(so.event("invoice.payment_failed", retry))
    run()
    assert len(messenger.messages) == 1
    [case] = all_rows(svc, DunningCase)
    assert case.attempt_count == 2 and case.messages_sent == 1


def test_paid_invoice_closes_the_case_and_lands_in_the_ledger_once(svc, deliver, run, billing, messenger, clock):
    failed_at = ts(clock, hours=-30)
    inv = so.invoice(amount_due=12000, attempt_count=1)
    billing.put(inv)
    deliver(so.event("invoice.payment_failed", inv, created=failed_at))
    run()
    paid = dict(inv, status="paid", attempt_count=2, amount_paid=12000, status_transitions={"paid_at": ts(clock)})
    deliver(so.event("invoice.paid", paid))
    deliver(so.event("invoice.payment_succeeded", paid))
    run()
    [case] = all_rows(svc, DunningCase)
    assert case.status == "recovered"
    [entry] = all_rows(svc, LedgerEntry)
    assert (entry.amount, entry.currency, entry.kind) == (12000, "usd", "recovery")
    assert entry.seconds_to_recover == 30 * 3600
    assert (entry.attempts, entry.messages_sent, entry.attribution) == (2, 1, "provider_retry")


def test_invoice_paid_before_any_failure_is_not_a_recovery(svc, deliver, run):
    paid = so.invoice(status="paid", attempt_count=1)
    deliver(so.event("invoice.paid", paid))
    run()
    assert all_rows(svc, DunningCase) == [] and all_rows(svc, LedgerEntry) == []


def test_paid_event_arriving_before_the_older_failure_still_records_one_recovery_and_no_message(
    svc, deliver, run, billing, messenger, clock
):
    inv = so.invoice(attempt_count=1, amount_due=3000)
    paid = dict(inv, status="paid", attempt_count=2, amount_paid=3000, status_transitions={"paid_at": ts(clock)})
    billing.put(paid)
    deliver(so.event("invoice.paid", paid, created=ts(clock)))
    run()
    deliver(so.event("invoice.payment_failed", inv, created=ts(clock, hours=-5)))
    run()
    [case] = all_rows(svc, DunningCase)
    assert case.status == "recovered"
    [entry] = all_rows(svc, LedgerEntry)
    assert entry.amount == 3000 and entry.seconds_to_recover == 5 * 3600
    assert messenger.messages == []


@pytest.mark.parametrize(
    "event_type,status", [("invoice.voided", "void"), ("invoice.marked_uncollectible", "uncollectible")]
)
def test_void_and_uncollectible_close_the_case_and_cancel_pending_messages(
    svc, deliver, run, billing, messenger, event_type, status
):
    inv = so.invoice()
    billing.put(inv)
    deliver(so.event("invoice.payment_failed", inv))
    deliver(so.event(event_type, dict(inv, status=status)))
    run()
    [case] = all_rows(svc, DunningCase)
    assert case.status == status
    assert {n.status for n in all_rows(svc, Notification)} == {"canceled"}
    assert messenger.messages == [] and all_rows(svc, LedgerEntry) == []


def test_sending_rechecks_stripe_and_skips_an_invoice_paid_meanwhile(svc, deliver, run, billing, messenger, clock):
    inv = so.invoice()
    billing.put(inv)
    deliver(so.event("invoice.payment_failed", inv))
    Worker(svc).process_events()
    billing.set_status(inv["id"], "paid", amount_paid=4900, paid_at=clock.now())
    run()
    first, *later = all_rows(svc, Notification)
    assert first.status == "skipped" and "paid" in first.last_error
    assert {n.status for n in later} == {"canceled"}  # the case closed as recovered
    assert messenger.messages == []
    assert [e.invoice_id for e in all_rows(svc, LedgerEntry)] == [inv["id"]]


def test_unknown_customer_marks_the_case_failed_permanently_without_retry(svc, deliver, run, billing, messenger):
    inv = so.invoice()
    billing.put(inv)
    deliver(so.event("invoice.payment_failed", inv))
    Worker(svc).process_events()
    billing.fail_with = CustomerMissing("Stripe resource_missing: No such customer: 'cus_A'")
    run()
    notification = first_message(svc)
    assert (notification.status, notification.attempts) == ("failed", 1)
    [case] = all_rows(svc, DunningCase)
    assert case.status == "error" and "resource_missing" in case.close_reason


def test_portal_not_configured_holds_the_message_and_logs_an_error(
    svc, deliver, run, billing, messenger, clock, caplog
):
    inv = so.invoice()
    billing.put(inv)
    deliver(so.event("invoice.payment_failed", inv))
    Worker(svc).process_events()
    billing.fail_with = ConfigurationNeeded("Stripe Billing Portal is not configured: run `webhook-app portal setup`")
    with caplog.at_level(logging.ERROR):
        run()
    notification = first_message(svc)
    assert notification.status == "held" and "portal setup" in notification.last_error
    assert any("portal setup" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    billing.fail_with = None
    clock.advance(hours=1, seconds=1)
    run()
    assert len(messenger.messages) == 1


def test_replaying_every_event_sends_no_extra_message_and_counts_no_extra_recovery(
    svc, deliver, run, billing, messenger, clock
):
    from webhook_app.replay import requeue

    inv = so.invoice()
    billing.put(inv)
    deliver(so.event("invoice.payment_failed", inv))
    run()
    deliver(so.event("invoice.paid", dict(inv, status="paid", attempt_count=2, amount_paid=4900)))
    run()
    with svc.db.session() as s:
        from webhook_app.models import Event

        ids = tuple(s.scalars(select(Event.event_id)))
    assert requeue(svc.db, clock.now(), event_ids=ids)[0] == 2
    run()
    assert len(messenger.messages) == 1 and len(all_rows(svc, LedgerEntry)) == 1
