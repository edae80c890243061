"""Personal data kept no longer than needed: the retention sweep and `customer.deleted`, on SQLite and
PostgreSQL. Names and emails go (on cases and ledger rows); amounts, ids and dates stay."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from tests.conftest import WEBHOOK_SECRET
from tests.fixtures import stripe_objects as so
from webhook_app import privacy
from webhook_app.clock import from_unix
from webhook_app.models import DunningCase, LedgerEntry, Notification
from webhook_app.states import NotificationStatus
from webhook_app.worker import Worker


def ts(clock, **delta) -> int:
    return int((clock.now() + timedelta(**delta) - from_unix(0)).total_seconds())


def recover(deliver, billing, clock, invoice_id: str, customer: str, amount: int = 4900) -> None:
    """A failure, the payment, and a partial refund, delivered as Stripe would."""
    inv = so.invoice(invoice_id=invoice_id, customer=customer, amount_due=amount, email=f"{customer}@example.com")
    billing.put(inv)
    deliver(so.event("invoice.payment_failed", inv, created=ts(clock, hours=-2)))
    paid = dict(inv, status="paid", attempt_count=2, amount_paid=amount, status_transitions={"paid_at": ts(clock)})
    billing.put(paid)
    deliver(so.event("invoice.paid", paid))
    deliver(
        so.event(
            "credit_note.created",
            {
                "id": f"cn_{invoice_id}",
                "object": "credit_note",
                "invoice": invoice_id,
                "currency": "usd",
                "post_payment_amount": 900,
                "status": "issued",
                "created": ts(clock),
            },
        )
    )


def cases(svc) -> dict[str, DunningCase]:
    with svc.db.session() as s:
        return {c.invoice_id: c for c in s.scalars(select(DunningCase))}


def ledger(svc) -> list[LedgerEntry]:
    with svc.db.session() as s:
        return list(s.scalars(select(LedgerEntry).order_by(LedgerEntry.id)))


def amounts(rows: list[LedgerEntry]) -> list[tuple]:
    return [(r.entry_key, r.invoice_id, r.customer_id, r.amount, r.currency, r.recovered_at) for r in rows]


def test_a_case_closed_366_days_ago_has_no_name_or_email_left_and_its_amounts_are_unchanged(
    svc, deliver, billing, clock
):
    worker = Worker(svc)
    recover(deliver, billing, clock, "in_old", "cus_old")
    worker.run_once()
    clock.advance(days=2)
    recover(deliver, billing, clock, "in_recent", "cus_recent")
    worker.run_once()
    before = ledger(svc)
    assert {r.customer_email for r in before} == {"cus_old@example.com", "cus_recent@example.com"}
    assert [r.kind for r in before] == ["recovery", "credit_note", "recovery", "credit_note"]
    assert before[1].customer_name == "Ada Lovelace"  # corrections carry the recovery's names

    clock.advance(days=364, hours=12)  # in_old closed 366 days ago; in_recent 364 days ago
    assert worker.upkeep(force=True)
    old, recent = cases(svc)["in_old"], cases(svc)["in_recent"]
    assert (old.customer_name, old.customer_email, old.hosted_invoice_url) == (None, None, None)
    assert old.pii_erased_at == clock.now()
    assert (old.invoice_id, old.customer_id, old.amount_due, old.invoice_number) == (
        "in_old",
        "cus_old",
        4900,
        "INV-0001",
    )
    assert recent.customer_email == "cus_recent@example.com" and recent.pii_erased_at is None
    after = ledger(svc)
    assert amounts(after) == amounts(before)  # the ledger's money never changes
    assert [(r.customer_name, r.customer_email) for r in after if r.invoice_id == "in_old"] == [(None, None)] * 2
    assert all(r.customer_email == "cus_recent@example.com" for r in after if r.invoice_id == "in_recent")
    assert privacy.erase_expired(svc.db, clock.now(), 365) == 0  # idempotent: nothing left to erase

    clock.advance(days=2)
    assert privacy.erase_expired(svc.db, clock.now(), 365) == 1
    assert cases(svc)["in_recent"].customer_email is None


def test_the_retention_is_configurable_and_open_cases_keep_their_data_whatever_their_age(make_app, clock, billing):
    app = make_app(PII_RETENTION_DAYS=30)
    svc = app.extensions["webhook_app"]
    client = app.test_client()

    def deliver(event: dict) -> None:
        body, headers = so.signed(event, WEBHOOK_SECRET)
        assert client.post("/webhooks/stripe", data=body, headers=headers).status_code == 200

    assert svc.settings.privacy.pii_retention_days == 30
    still_open = so.invoice(invoice_id="in_open", customer="cus_open", email="open@example.com")
    billing.put(still_open)
    deliver(so.event("invoice.payment_failed", still_open))
    recover(deliver, billing, clock, "in_paid", "cus_paid")
    with app.app_context():
        worker = Worker(svc)
        worker.run_once()
        clock.advance(days=29)
        worker.upkeep(force=True)
        assert cases(svc)["in_paid"].customer_email == "cus_paid@example.com"
        clock.advance(days=2)
        worker.upkeep(force=True)
    found = cases(svc)
    assert found["in_paid"].customer_email is None  # closed 31 days ago, retention 30 days
    assert found["in_open"].customer_email == "open@example.com"  # still being chased: kept


def test_customer_deleted_erases_them_at_once_and_stops_their_messages(svc, deliver, billing, clock):
    worker = Worker(svc)
    recover(deliver, billing, clock, "in_paid", "cus_gone")
    open_inv = so.invoice(invoice_id="in_open", customer="cus_gone", email="cus_gone@example.com")
    other = so.invoice(invoice_id="in_other", customer="cus_stays", email="stays@example.com")
    for inv in (open_inv, other):
        billing.put(inv)
        deliver(so.event("invoice.payment_failed", inv))
    worker.run_once()

    customer = {"id": "cus_gone", "object": "customer", "email": "cus_gone@example.com", "deleted": True}
    assert deliver(so.event("customer.deleted", customer)).status_code == 200
    worker.run_once()
    found = cases(svc)
    for invoice_id in ("in_paid", "in_open"):
        case = found[invoice_id]
        assert (case.customer_name, case.customer_email, case.hosted_invoice_url) == (None, None, None)
        assert case.pii_erased_at is not None
    assert found["in_other"].customer_email == "stays@example.com"
    assert all(r.customer_email is None and r.customer_name is None for r in ledger(svc) if r.customer_id == "cus_gone")
    with svc.db.session() as s:
        unsent = s.scalars(
            select(Notification.status).where(
                Notification.case_id == found["in_open"].id, Notification.sent_at.is_(None)
            )
        ).all()
    assert unsent and set(unsent) == {NotificationStatus.CANCELED}

    # Stripe retries the invoice once more, and that event arrives late: nothing is written back or sent.
    deliver(so.event("invoice.payment_failed", dict(open_inv, attempt_count=2)))
    worker.run_once()
    again = cases(svc)["in_open"]
    assert again.customer_email is None and again.customer_name is None
    with svc.db.session() as s:
        due = s.scalars(
            select(Notification).where(
                Notification.case_id == again.id, Notification.status == NotificationStatus.PENDING
            )
        ).all()
    assert due == []
