"""Refunds and credit notes on recovered invoices: new offsetting ledger rows, delivered as Stripe events.

Runs the real intake and worker on SQLite and PostgreSQL. Before API 2025-03-31.basil a Charge names its
invoice (`charge.refunded` counts refunds); from basil on only `credit_note.created` can tie money given
back to an invoice.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.fixtures import stripe_objects as so
from webhook_app.clock import from_unix
from webhook_app.finance.period import Period
from webhook_app.finance.queries import Filters, summarize
from webhook_app.models import Event, LedgerEntry
from webhook_app.worker import Worker


def ts(clock, **delta) -> int:
    return int((clock.now() + timedelta(**delta) - from_unix(0)).total_seconds())


@pytest.fixture
def run(svc):
    return lambda: Worker(svc).run_once()


@pytest.fixture(autouse=True)
def _billing_knows_every_invoice(billing, monkeypatch):
    """Sending re-reads the invoice from Stripe; the fake learns each invoice the tests build."""
    build = so.invoice

    def invoice(**kwargs):
        obj = build(**kwargs)
        billing.put(obj)
        return obj

    monkeypatch.setattr(so, "invoice", invoice)


def ledger(svc) -> list[tuple[str, str, int]]:
    with svc.db.session() as s:
        rows = s.scalars(select(LedgerEntry).order_by(LedgerEntry.id)).all()
    return [(r.entry_key, r.kind, r.amount) for r in rows]


def event_statuses(svc) -> dict[str, str]:
    with svc.db.session() as s:
        return {e.type: e.status for e in s.scalars(select(Event).order_by(Event.id))}


def recover(deliver, run, clock, *, api_version=so.LEGACY, amount=4900, currency="usd", invoice_id=None) -> dict:
    """An invoice that failed once and was then paid: one recovery row in the ledger."""
    inv = so.invoice(
        api_version=api_version, amount_due=amount, currency=currency, attempt_count=1, invoice_id=invoice_id
    )
    deliver(so.event("invoice.payment_failed", inv, api_version=api_version, created=ts(clock, hours=-2)))
    run()
    paid = dict(
        so.invoice(
            api_version=api_version,
            invoice_id=inv["id"],
            amount_due=amount,
            currency=currency,
            attempt_count=2,
            status="paid",
            paid_at=ts(clock, hours=-1),
        )
    )
    deliver(so.event("invoice.paid", paid, api_version=api_version, created=ts(clock, hours=-1)))
    run()
    return inv


def charge(
    invoice_id: str | None, refunded: int, *, charge_id: str = "ch_1", amount: int = 4900, currency: str = "usd"
) -> dict:
    obj = {
        "id": charge_id,
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": refunded,
        "refunded": refunded == amount,
        "currency": currency,
        "customer": "cus_A",
        "livemode": False,
        "status": "succeeded",
        "payment_intent": "pi_1",
    }
    if invoice_id is not None:
        obj["invoice"] = invoice_id  # pre-basil charges only
    return obj


def credit_note(
    invoice_id: str,
    amount: int,
    *,
    note_id: str = "cn_1",
    refunds=(),
    out_of_band: int = 0,
    currency: str = "usd",
    created: int | None = None,
    legacy_refund: str | None = None,
) -> dict:
    obj = {
        "id": note_id,
        "object": "credit_note",
        "invoice": invoice_id,
        "customer": "cus_A",
        "amount": amount,
        "currency": currency,
        "status": "issued",
        "type": "post_payment",
        "pre_payment_amount": 0,
        "post_payment_amount": amount,
        "out_of_band_amount": out_of_band or None,
        "refunds": [{"amount_refunded": a, "refund": r} for r, a in refunds],
        "created": created,
    }
    if legacy_refund is not None:
        obj.pop("refunds")
        obj["refund"] = legacy_refund
    return obj


def test_partial_then_full_refund_appends_offsetting_rows_and_never_edits_the_recovery(svc, deliver, run, clock):
    inv = recover(deliver, run, clock)
    deliver(so.event("charge.refunded", charge(inv["id"], 1000), api_version=so.LEGACY))
    run()
    # The same state again (e.g. from `events sync` under another event id) adds nothing.
    deliver(so.event("charge.refunded", charge(inv["id"], 1000), api_version=so.LEGACY))
    run()
    deliver(so.event("charge.refunded", charge(inv["id"], 4900), api_version=so.LEGACY))
    run()
    assert ledger(svc) == [
        (f"recovery:{inv['id']}", "recovery", 4900),
        ("refund:ch_1:1000", "refund", -1000),
        ("refund:ch_1:4900", "refund", -3900),
    ]


def test_refund_events_out_of_order_count_the_refunded_total_once(svc, deliver, run, clock):
    inv = recover(deliver, run, clock)
    deliver(so.event("charge.refunded", charge(inv["id"], 4900), api_version=so.LEGACY))
    deliver(so.event("charge.refunded", charge(inv["id"], 1000), api_version=so.LEGACY))
    run()
    assert ledger(svc)[1:] == [("refund:ch_1:4900", "refund", -4900)]


def test_a_correction_row_copies_the_recovery_and_is_dated_when_the_money_went_back(svc, deliver, run, clock):
    inv = recover(deliver, run, clock)
    deliver(so.event("charge.refunded", charge(inv["id"], 1000), api_version=so.LEGACY, created=ts(clock, days=3)))
    run()
    with svc.db.session() as s:
        recovery, refund = s.scalars(select(LedgerEntry).order_by(LedgerEntry.id)).all()
    assert refund.recovered_at == clock.now().replace(microsecond=0) + timedelta(days=3)
    assert (refund.invoice_id, refund.customer_id, refund.case_id, refund.currency) == (
        recovery.invoice_id,
        recovery.customer_id,
        recovery.case_id,
        "usd",
    )
    assert refund.attribution == recovery.attribution and refund.seconds_to_recover is None


def test_refunds_of_invoices_that_were_never_recovered_change_nothing(svc, deliver, run, clock):
    never_failed = so.invoice(status="paid", attempt_count=1, paid_at=ts(clock), api_version=so.LEGACY)
    deliver(so.event("invoice.paid", never_failed, api_version=so.LEGACY))
    deliver(so.event("charge.refunded", charge(never_failed["id"], 4900), api_version=so.LEGACY))
    deliver(so.event("credit_note.created", credit_note("in_unknown", 500)))
    run()
    assert ledger(svc) == []
    assert event_statuses(svc) == {"invoice.paid": "done", "charge.refunded": "done", "credit_note.created": "done"}


def test_basil_refunds_are_counted_from_the_credit_note(svc, deliver, run, clock):
    inv = recover(deliver, run, clock, api_version=so.BASIL)
    # A basil Charge has no `invoice`: nothing to tie it to, so the credit note is the record.
    deliver(so.event("charge.refunded", charge(None, 1500)))
    deliver(so.event("credit_note.created", credit_note(inv["id"], 1500, refunds=[("re_1", 1500)])))
    run()
    assert ledger(svc)[1:] == [("credit_note:cn_1", "credit_note", -1500)]
    assert event_statuses(svc)["charge.refunded"] == "done"


def test_legacy_credit_note_counts_only_what_its_refund_does_not(svc, deliver, run, clock):
    inv = recover(deliver, run, clock)
    # $30 credit note: $20 refunded to the card (also reported by charge.refunded), $10 credited out of band.
    note = credit_note(inv["id"], 3000, refunds=[("re_1", 2000)], out_of_band=1000)
    deliver(so.event("credit_note.created", note, api_version=so.LEGACY))
    deliver(so.event("charge.refunded", charge(inv["id"], 2000), api_version=so.LEGACY))
    run()
    assert sorted(ledger(svc)[1:]) == [
        ("credit_note:cn_1", "credit_note", -1000),
        ("refund:ch_1:2000", "refund", -2000),
    ]


def test_legacy_credit_note_with_an_unexpanded_refund_id(svc, deliver, run, clock):
    inv = recover(deliver, run, clock)
    note = credit_note(inv["id"], 2500, legacy_refund="re_9", out_of_band=500)
    deliver(so.event("credit_note.created", note, api_version=so.LEGACY))
    run()
    assert ledger(svc)[1:] == [("credit_note:cn_1", "credit_note", -500)]


def test_corrections_never_take_an_invoice_below_zero(svc, deliver, run, clock):
    inv = recover(deliver, run, clock, api_version=so.BASIL)
    deliver(so.event("credit_note.created", credit_note(inv["id"], 4000, note_id="cn_1")))
    deliver(so.event("credit_note.created", credit_note(inv["id"], 4000, note_id="cn_2")))
    run()
    assert ledger(svc)[1:] == [("credit_note:cn_1", "credit_note", -4000), ("credit_note:cn_2", "credit_note", -900)]


def test_a_voided_credit_note_is_reversed_by_a_new_row(svc, deliver, run, clock):
    inv = recover(deliver, run, clock, api_version=so.BASIL)
    note = credit_note(inv["id"], 1500)
    deliver(so.event("credit_note.created", note))
    run()
    deliver(so.event("credit_note.voided", dict(note, status="void")))
    deliver(so.event("credit_note.voided", dict(note, status="void")))  # a second delivery: still one row
    run()
    assert ledger(svc)[1:] == [
        ("credit_note:cn_1", "credit_note", -1500),
        ("credit_note_void:cn_1", "credit_note", 1500),
    ]


def test_jpy_credit_note_in_whole_yen_and_no_currency_mixing(svc, deliver, run, clock):
    inv = recover(deliver, run, clock, api_version=so.BASIL, amount=5000, currency="jpy")
    deliver(so.event("credit_note.created", credit_note(inv["id"], 1200, currency="jpy")))
    deliver(so.event("credit_note.created", credit_note(inv["id"], 100, note_id="cn_usd", currency="usd")))
    run()
    assert ledger(svc)[1:] == [("credit_note:cn_1", "credit_note", -1200)]  # a USD note cannot offset yen
    now = clock.now()
    with svc.db.session() as s:
        [jpy] = summarize(s, Filters(Period(now - timedelta(days=1), now + timedelta(days=1))))
    assert (jpy.currency, jpy.recovered_gross, jpy.corrections, jpy.recovered_net) == ("jpy", 5000, -1200, 3800)


def test_a_refund_processed_before_its_payment_waits_for_the_recovery(make_app, deliver, clock):
    app = make_app(WORKER_RETRY_BASE_SECONDS="60")
    svc = app.extensions["webhook_app"]
    client = app.test_client()

    def send(event):
        body, headers = so.signed(event, "whsec_test_primary_0123456789")
        assert client.post("/webhooks/stripe", data=body, headers=headers).status_code == 200

    inv = so.invoice(api_version=so.LEGACY, attempt_count=1)
    send(so.event("invoice.payment_failed", inv, api_version=so.LEGACY, created=ts(clock, hours=-2)))
    Worker(svc).run_once()
    send(so.event("charge.refunded", charge(inv["id"], 4900), api_version=so.LEGACY))
    Worker(svc).run_once()
    assert ledger(svc) == [] and event_statuses(svc)["charge.refunded"] == "pending"  # retried later
    paid = so.invoice(api_version=so.LEGACY, invoice_id=inv["id"], attempt_count=2, status="paid", paid_at=ts(clock))
    send(so.event("invoice.paid", paid, api_version=so.LEGACY))
    Worker(svc).run_once()  # the payment is recorded; the refund's retry is not due yet
    assert [k for k, _, _ in ledger(svc)] == [f"recovery:{inv['id']}"]
    clock.advance(hours=2)
    Worker(svc).run_once()
    assert [k for k, _, _ in ledger(svc)] == [f"recovery:{inv['id']}", "refund:ch_1:4900"]


def test_a_closed_month_keeps_its_totals_when_a_later_refund_arrives(svc, deliver, run, clock):
    inv = recover(deliver, run, clock)
    now = clock.now()
    before = Period(now - timedelta(days=1), now + timedelta(minutes=1))
    with svc.db.session() as s:
        [closed] = summarize(s, Filters(before))
    deliver(so.event("charge.refunded", charge(inv["id"], 4900), api_version=so.LEGACY, created=ts(clock, days=20)))
    run()
    with svc.db.session() as s:
        [again] = summarize(s, Filters(before))
        [later] = summarize(s, Filters(Period(now + timedelta(days=1), now + timedelta(days=30))))
    assert (again.recovered_net, again.corrections) == (closed.recovered_net, 0) == (4900, 0)
    assert (later.recovered_gross, later.corrections, later.recovered_net) == (0, -4900, -4900)
