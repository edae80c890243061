"""Reading settled figures from Stripe objects of both API generations, without a network."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.fixtures import stripe_objects as so
from webhook_app.domain import Settlement
from webhook_app.errors import BadPayload, PermanentError, SettlementNotReady
from webhook_app.providers.stripe.settlement import (
    charges_of_invoice_payments,
    charges_of_legacy_invoice,
    combine,
    settlement_from_balance_transaction,
)


def listing(*payments: dict) -> dict:
    return {"object": "list", "data": list(payments), "has_more": False, "url": "/v1/invoice_payments"}


def test_a_balance_transaction_gives_gross_fee_net_and_the_exact_exchange_rate():
    txn = so.balance_transaction(txn_id="txn_1", amount=8220, fee=268, currency="usd", exchange_rate=0.00685)
    assert settlement_from_balance_transaction(txn) == Settlement(
        reference="txn_1", amount=8220, fee=268, net=7952, currency="usd", exchange_rate=Decimal("0.00685")
    )
    same_currency = settlement_from_balance_transaction(so.balance_transaction(exchange_rate=None))
    assert same_currency.exchange_rate is None


@pytest.mark.parametrize(
    "changes",
    [{"amount": "49.00"}, {"currency": "dollars"}, {"exchange_rate": -1}, {"exchange_rate": "fast"}, {"id": None}],
)
def test_a_malformed_balance_transaction_is_a_bad_payload(changes):
    with pytest.raises(BadPayload):
        settlement_from_balance_transaction({**so.balance_transaction(), **changes})


def test_paid_invoice_payments_give_their_charges_and_skip_the_rest():
    charge = so.charge(charge_id="ch_1", balance_transaction="txn_1")
    payments = listing(
        so.invoice_payment("in_1", payment_intent=so.payment_intent(latest_charge=charge), amount=4900),
        so.invoice_payment("in_1", status="canceled", payment_intent="pi_old"),  # a retry that never paid
        so.invoice_payment("in_1", status="open", payment_intent="pi_open"),
        so.invoice_payment("in_1", charge="ch_bare", amount=100),
        so.invoice_payment("in_1"),  # payment_record: paid outside Stripe
    )
    assert charges_of_invoice_payments(payments) == [(charge, 4900), ("ch_bare", 100)]
    assert charges_of_invoice_payments(listing(so.invoice_payment("in_1"))) == []


def test_an_unexpanded_payment_intent_is_a_bad_payload_and_one_without_a_charge_is_not_ready():
    with pytest.raises(BadPayload):
        charges_of_invoice_payments(listing(so.invoice_payment("in_1", payment_intent="pi_1")))
    with pytest.raises(SettlementNotReady):
        charges_of_invoice_payments(listing(so.invoice_payment("in_1", payment_intent=so.payment_intent())))
    with pytest.raises(BadPayload):
        charges_of_invoice_payments({"object": "list"})


def test_a_legacy_invoice_names_its_charge_or_none_when_paid_outside_stripe():
    paid = so.invoice(api_version=so.LEGACY, status="paid", charge=so.charge(charge_id="ch_9"))
    assert [c["id"] for c in charges_of_legacy_invoice(paid)] == ["ch_9"]
    out_of_band = so.invoice(api_version=so.LEGACY, status="paid", charge=None, paid_out_of_band=True)
    assert charges_of_legacy_invoice(out_of_band) == []


def test_partial_payments_add_up_in_one_payout_currency_and_refuse_to_mix_two():
    a = Settlement("txn_a", 1000, 59, 941, "usd", Decimal("1.08"))
    b = Settlement("txn_b", 500, 30, 470, "usd", Decimal("1.08"))
    assert combine([a, b]) == Settlement("txn_a,txn_b", 1500, 89, 1411, "usd", Decimal("1.08"))
    assert combine([a, Settlement("txn_c", 500, 30, 470, "usd", Decimal("1.09"))]).exchange_rate is None
    assert combine([]) is None and combine([a]) is a
    with pytest.raises(PermanentError):
        combine([a, Settlement("txn_d", 500, 30, 470, "eur")])
