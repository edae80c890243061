"""Settled figures of recoveries: the Stripe reads (the SDK against the Stripe stand-in) and the worker's
look-up outside any handler transaction, filling the ledger row once, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.fixtures import stripe_objects as so
from tests.fixtures.inbox import store_stripe
from tests.integration.ops_env import open_ops_env
from webhook_app import ledger, settlement
from webhook_app.domain import Settlement
from webhook_app.errors import PermanentError, ResourceMissing, SettlementNotReady, TransientError
from webhook_app.models import LedgerEntry
from webhook_app.providers.stripe.settlement import LEGACY_EXPAND, PAYMENTS_EXPAND, StripeSettlements
from webhook_app.states import SettlementStatus
from webhook_app.worker import Worker


@pytest.fixture
def env(database_url, clock):
    environment, close = open_ops_env(database_url, clock, MESSAGING_PROVIDER="console")
    yield environment
    close()


def source(env, api_version: str | None = None) -> StripeSettlements:
    port = env.svc.provider("stripe").settlements
    assert isinstance(port, StripeSettlements)
    return StripeSettlements(port.api, api_version) if api_version else port


def paid_by_payment_intent(env, invoice_id: str, *, amount=4900, settled=4900, fee=172, currency="usd", rate=None):
    """Stripe's objects for an invoice paid by a PaymentIntent (basil and later)."""
    txn = so.balance_transaction(amount=settled, fee=fee, currency=currency, exchange_rate=rate)
    charge = so.charge(amount=amount, balance_transaction=txn["id"])
    intent = so.payment_intent(amount=amount, latest_charge=charge["id"])
    env.stripe.add_objects(txn, charge, intent)
    env.stripe.invoice_payments[invoice_id] = [
        so.invoice_payment(invoice_id, amount=amount, payment_intent=intent["id"])
    ]
    return txn


# -- the Stripe reads --------------------------------------------------------------------------------
def test_basil_invoice_payments_lead_to_the_charges_balance_transaction_in_two_calls(env):
    txn = paid_by_payment_intent(env, "in_1", amount=5000, settled=3450, fee=130, rate=0.0069)
    result = source(env).settlement("in_1")
    assert result is not None
    assert (result.reference, result.amount, result.fee, result.net, result.currency) == (
        txn["id"],
        3450,
        130,
        3320,
        "usd",
    )
    assert str(result.exchange_rate) == "0.0069"
    calls = [(m, p, params) for m, p, params in env.stripe.requests]
    assert [(m, p) for m, p, _ in calls] == [
        ("GET", "/v1/invoice_payments"),
        ("GET", f"/v1/balance_transactions/{txn['id']}"),
    ]
    assert calls[0][2]["invoice"] == "in_1" and calls[0][2]["expand"] == PAYMENTS_EXPAND


def test_a_payment_made_by_a_bare_charge_comes_with_its_balance_transaction_in_one_call(env):
    txn = so.balance_transaction(amount=2000, fee=88)
    charge = so.charge(amount=2000, balance_transaction=txn["id"])
    env.stripe.add_objects(txn, charge)
    env.stripe.invoice_payments["in_2"] = [so.invoice_payment("in_2", amount=2000, charge=charge["id"])]
    assert source(env).settlement("in_2") == Settlement(txn["id"], 2000, 88, 1912, "usd")
    assert env.stripe.count("GET", "/v1/invoice_payments") == 1 and len(env.stripe.requests) == 1


def test_before_basil_the_invoice_names_its_charge_and_one_call_answers(env):
    txn = so.balance_transaction(amount=1350, fee=69, exchange_rate=1.08)
    charge = so.charge(amount=1250, currency="eur", balance_transaction=txn["id"])
    env.stripe.add_objects(txn, charge)
    env.stripe.add_invoice(so.invoice(invoice_id="in_old", api_version=so.LEGACY, status="paid", charge=charge["id"]))
    result = source(env, api_version="2024-06-20").settlement("in_old")
    assert result is not None and (result.amount, result.net, str(result.exchange_rate)) == (1350, 1281, "1.08")
    [(method, path, params)] = env.stripe.requests
    assert (method, path, params["expand"]) == ("GET", "/v1/invoices/in_old", LEGACY_EXPAND)


def test_an_invoice_paid_outside_stripe_has_no_settlement(env):
    env.stripe.invoice_payments["in_oob"] = [so.invoice_payment("in_oob")]  # a payment record
    assert source(env).settlement("in_oob") is None
    env.stripe.add_invoice(so.invoice(invoice_id="in_old_oob", api_version=so.LEGACY, status="paid", charge=None))
    assert source(env, api_version="2024-06-20").settlement("in_old_oob") is None


def test_a_charge_not_settled_yet_is_not_ready_and_stripe_failures_are_classified(env):
    charge = so.charge(balance_transaction=None)
    intent = so.payment_intent(latest_charge=charge["id"])
    env.stripe.add_objects(charge, intent)
    env.stripe.invoice_payments["in_wait"] = [so.invoice_payment("in_wait", payment_intent=intent["id"])]
    with pytest.raises(SettlementNotReady):
        source(env).settlement("in_wait")
    env.stripe.outage["/v1/invoice_payments"] = 1
    with pytest.raises(TransientError):
        source(env).settlement("in_wait")
    with pytest.raises(ResourceMissing):
        source(env).settlement("in_nobody_knows")


def test_a_charge_paying_several_invoices_is_not_split_by_guesswork(env):
    txn = so.balance_transaction(amount=9000)
    charge = so.charge(amount=9000, balance_transaction=txn["id"])
    intent = so.payment_intent(amount=9000, latest_charge=charge["id"])
    env.stripe.add_objects(txn, charge, intent)
    env.stripe.invoice_payments["in_shared"] = [
        so.invoice_payment("in_shared", amount=4000, payment_intent=intent["id"])
    ]
    with pytest.raises(PermanentError, match="shared"):  # Stripe's figure covers both invoices
        source(env).settlement("in_shared")


# -- the worker fills the ledger row ---------------------------------------------------------------------
def recover(env, clock, invoice_id: str, amount: int = 4900, currency: str = "usd") -> None:
    """A failed payment then its payment, processed by the worker: one pending recovery row."""
    created = int(clock.now().timestamp())
    inv = so.invoice(invoice_id=invoice_id, customer=f"cus_{invoice_id}", amount_due=amount, currency=currency)
    paid = dict(inv, status="paid", attempt_count=2, amount_paid=amount, status_transitions={"paid_at": created})
    store_stripe(env.svc.db, so.event("invoice.payment_failed", inv, created=created - 3600), clock.now())
    store_stripe(env.svc.db, so.event("invoice.paid", paid, created=created), clock.now())
    env.stripe.add_invoice(paid)


def ledger_row(env, invoice_id: str) -> LedgerEntry:
    with env.svc.db.session() as s:
        return s.scalars(select(LedgerEntry).where(LedgerEntry.entry_key == f"recovery:{invoice_id}")).one()


def test_the_worker_fills_a_new_recoverys_settled_figures_once_after_its_transaction(env, clock):
    recover(env, clock, "in_w1", amount=12000, currency="jpy")
    txn = paid_by_payment_intent(env, "in_w1", amount=12000, settled=8220, fee=268, rate=0.00685)
    worker = Worker(env.svc)
    worker.run_once()
    row = ledger_row(env, "in_w1")
    assert row.settlement_status == SettlementStatus.PENDING  # the handler wrote it; no API call in there
    assert row.customer_email == "ada@example.com" and row.invoice_number == "INV-0001"
    assert worker.upkeep(force=True)
    row = ledger_row(env, "in_w1")
    assert (row.settlement_status, row.settlement_id) == (SettlementStatus.SETTLED, txn["id"])
    assert (row.settled_amount, row.settled_fee, row.settled_net, row.settled_currency) == (8220, 268, 7952, "usd")
    assert row.settled_exchange_rate == "0.00685"
    assert (row.amount, row.currency) == (12000, "jpy")  # the invoice amount is untouched
    before = len(env.stripe.requests)
    worker.upkeep(force=True)
    assert len(env.stripe.requests) == before  # settled rows are never looked up again


def test_a_recovery_paid_outside_stripe_is_marked_none_and_unknown_providers_unavailable(env, clock):
    recover(env, clock, "in_w2")
    env.stripe.invoice_payments["in_w2"] = [so.invoice_payment("in_w2")]
    Worker(env.svc).run_once()
    with env.svc.db.session() as s:  # a recovery of a provider this deployment no longer runs
        s.add(
            LedgerEntry(
                provider="legacybill",
                entry_key="recovery:in_x",
                kind="recovery",
                invoice_id="in_x",
                customer_id="c",
                amount=1,
                currency="usd",
                recovered_at=clock.now(),
                settlement_status="pending",
                created_at=clock.now(),
            )
        )
    outcome = settlement.settle_pending(env.svc)
    assert (outcome.none, outcome.unavailable) == (1, 1)
    assert ledger_row(env, "in_w2").settlement_status == SettlementStatus.NONE
    assert ledger_row(env, "in_x").settlement_status == SettlementStatus.UNAVAILABLE


def test_a_charge_not_settled_yet_waits_then_is_given_up_after_a_week(env, clock):
    recover(env, clock, "in_w3")
    charge = so.charge(balance_transaction=None)
    intent = so.payment_intent(latest_charge=charge["id"])
    env.stripe.add_objects(charge, intent)
    env.stripe.invoice_payments["in_w3"] = [so.invoice_payment("in_w3", payment_intent=intent["id"])]
    Worker(env.svc).run_once()
    outcome = settlement.settle_pending(env.svc)
    row = ledger_row(env, "in_w3")
    assert outcome.waiting == 1 and row.settlement_status == SettlementStatus.PENDING
    assert row.settlement_checked_at == clock.now()
    clock.advance(days=8)
    settlement.settle_pending(env.svc)
    assert ledger_row(env, "in_w3").settlement_status == SettlementStatus.UNAVAILABLE


def test_a_stripe_outage_pauses_the_pass_and_loses_nothing(env, clock):
    for invoice_id in ("in_t1", "in_t2"):
        recover(env, clock, invoice_id)
        paid_by_payment_intent(env, invoice_id)
    Worker(env.svc).run_once()
    before = env.stripe.count("GET", "/v1/invoice_payments")  # the failures' reasons were read there too
    env.stripe.outage["/v1/invoice_payments"] = 1
    outcome = settlement.settle_pending(env.svc)
    assert outcome.stopped and "500" in outcome.stopped and outcome.settled == 0
    assert env.stripe.count("GET", "/v1/invoice_payments") == before + 1  # the second row was not tried
    outcome = settlement.settle_pending(env.svc)
    assert outcome.settled == 2
    assert {ledger_row(env, i).settlement_status for i in ("in_t1", "in_t2")} == {SettlementStatus.SETTLED}


def test_upkeep_runs_on_its_interval_and_the_settlement_is_recorded_once_across_twin_workers(env, clock):
    recover(env, clock, "in_w4")
    paid_by_payment_intent(env, "in_w4")
    first, twin = Worker(env.svc), Worker(env.svc)
    first.run_once()  # upkeep ran first, before the events: the row is pending
    assert first.upkeep() is False  # not due again before WORKER_UPKEEP_SECONDS
    assert twin.upkeep() is True  # another process has its own schedule
    assert ledger_row(env, "in_w4").settlement_status == SettlementStatus.SETTLED
    with env.svc.db.session() as s:
        late = ledger.record_settlement(
            s, ledger_row(env, "in_w4").id, Settlement("txn_other", 1, 0, 1, "eur"), clock.now() + timedelta(1)
        )
    assert late is False and ledger_row(env, "in_w4").settled_currency == "usd"
