"""What a paid invoice put in the Stripe balance: its charge's balance transaction, both API generations.

A BalanceTransaction (https://docs.stripe.com/api/balance_transactions/object) is in the account's
settlement currency: `amount` (gross), `fee` and `net` in its minor units, and `exchange_rate` (null
when no conversion happened) such that invoice-currency amount x rate = settlement-currency amount, in
major units ("10.00 EUR charged, 12.34 USD settled: amount 1234, currency usd, exchange_rate 1.234").

Finding the charge:
- before 2025-03-31.basil the invoice names it: `GET /v1/invoices/:id?expand[]=charge.balance_transaction`
  answers everything in one call;
- since basil the invoice has no `charge`; its payments are InvoicePayment objects
  (https://docs.stripe.com/api/invoice-payment/list): `GET /v1/invoice_payments?invoice=in_…` with
  `expand[]=data.payment.payment_intent.latest_charge` (a PaymentIntent's successful charge; four
  properties is Stripe's maximum expansion depth, so its `balance_transaction` stays an id and costs a
  `GET /v1/balance_transactions/:id`) and `expand[]=data.payment.charge.balance_transaction` (a payment
  made by a bare charge). `payment_record` payments were made outside Stripe: no balance transaction.
The client speaks the SDK's pinned API version, so that version picks the path.

A payment intent that paid several invoices at once has one balance transaction for all of them: its
share is not Stripe's figure, so that case is reported as unavailable rather than guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import stripe

from webhook_app import payload
from webhook_app.domain import Settlement
from webhook_app.errors import BadPayload, PermanentError, SettlementNotReady
from webhook_app.providers.stripe.client import StripeApi
from webhook_app.providers.stripe.translate import BASIL

PAYMENTS_LIMIT = 100  # one page: an invoice with more than 100 payments is not a failed-payment recovery
LEGACY_EXPAND = ["charge.balance_transaction"]
PAYMENTS_EXPAND = ["data.payment.payment_intent.latest_charge", "data.payment.charge.balance_transaction"]


def settlement_from_balance_transaction(txn: Any) -> Settlement:
    """A Settlement from a BalanceTransaction object (dict)."""
    if not isinstance(txn, Mapping) or txn.get("object", "balance_transaction") != "balance_transaction":
        raise BadPayload("balance transaction is not an object")
    rate = txn.get("exchange_rate")
    exchange_rate: Decimal | None = None
    if rate is not None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float, str)):
            raise BadPayload("field 'exchange_rate' must be a number")
        try:
            # repr of a float is the shortest text giving it back: the digits Stripe sent.
            exchange_rate = Decimal(repr(rate) if isinstance(rate, float) else str(rate))
        except InvalidOperation:
            raise BadPayload("field 'exchange_rate' must be a number") from None
        if not exchange_rate.is_finite() or exchange_rate <= 0:
            raise BadPayload("field 'exchange_rate' must be a positive number")
    return Settlement(
        reference=payload.ident(txn.get("id"), "balance_transaction.id"),
        amount=payload.integer(txn.get("amount"), "balance_transaction.amount"),
        fee=payload.integer(txn.get("fee"), "balance_transaction.fee"),
        net=payload.integer(txn.get("net"), "balance_transaction.net"),
        currency=payload.currency(txn.get("currency"), "balance_transaction.currency"),
        exchange_rate=exchange_rate,
    )


def combine(settlements: list[Settlement]) -> Settlement | None:
    """Several payments of one invoice (partial payments) as one settlement; None for none.

    Their sum only means something in one settlement currency; the rate is kept when they share it.
    """
    if not settlements:
        return None
    if len(settlements) == 1:
        return settlements[0]
    if len({s.currency for s in settlements}) > 1:
        raise PermanentError("the invoice's payments settled in different currencies")
    rates = {s.exchange_rate for s in settlements}
    return Settlement(
        reference=",".join(s.reference for s in settlements)[:255],
        amount=sum(s.amount for s in settlements),
        fee=sum(s.fee for s in settlements),
        net=sum(s.net for s in settlements),
        currency=settlements[0].currency,
        exchange_rate=rates.pop() if len(rates) == 1 else None,
    )


def _balance_transaction_of(charge: Any) -> Any:
    """The charge's balance transaction: an object, an id, or SettlementNotReady when it has none yet."""
    if not isinstance(charge, Mapping):
        raise BadPayload("the charge was not expanded")
    if charge.get("status") not in (None, "succeeded") or charge.get("paid") is False:
        raise SettlementNotReady(f"charge {charge.get('id')} has not succeeded")
    txn = charge.get("balance_transaction")
    if txn is None:
        raise SettlementNotReady(f"charge {charge.get('id')} has no balance transaction yet")
    return txn


def charges_of_legacy_invoice(invoice: Any) -> list[Any]:
    """The charge that paid a pre-basil invoice (expanded), or none (paid out of band or by credit)."""
    if not isinstance(invoice, Mapping) or invoice.get("object", "invoice") != "invoice":
        raise BadPayload("the invoice is not an invoice object")
    charge = invoice.get("charge")
    return [] if charge is None else [charge]


def charges_of_invoice_payments(listing: Any) -> list[tuple[Any, int | None]]:
    """(charge, amount paid towards this invoice) of each paid InvoicePayment of a basil-or-later list."""
    if not isinstance(listing, Mapping) or not isinstance(listing.get("data"), list):
        raise BadPayload("the invoice payments list has no 'data' array")
    charges = []
    for item in listing["data"]:
        if not isinstance(item, Mapping) or item.get("status") != "paid":
            continue  # open (not yet paid) or canceled payments moved no money
        payment = item.get("payment")
        if not isinstance(payment, Mapping):
            raise BadPayload("an invoice payment has no 'payment'")
        paid = item.get("amount_paid")
        paid = paid if isinstance(paid, int) and not isinstance(paid, bool) else None
        kind = payment.get("type")
        if kind == "payment_intent":
            intent = payment.get("payment_intent")
            if not isinstance(intent, Mapping):
                raise BadPayload("the invoice payment's payment intent was not expanded")
            charge = intent.get("latest_charge")
            if charge is None:
                raise SettlementNotReady(f"payment intent {intent.get('id')} has no charge yet")
            charges.append((charge, paid))
        elif kind == "charge":
            charges.append((payment.get("charge"), paid))
        # payment_record: recorded from outside Stripe, no money moved through the balance
    return charges


class StripeSettlements:
    """`webhook_app.providers.base.SettlementSource` over the Stripe API (reads only)."""

    def __init__(self, api: StripeApi, api_version: str | None = None):
        self.api = api
        self.api_version = api_version or stripe.api_version

    def settlement(self, invoice_id: str) -> Settlement | None:
        """The settled figures of a paid invoice (see the module docstring for the calls made)."""
        if self.api_version < BASIL:
            invoice = self.api.call(self.api.client.v1.invoices.retrieve, invoice_id, {"expand": LEGACY_EXPAND})
            charges: list[tuple[Any, int | None]] = [(c, None) for c in charges_of_legacy_invoice(invoice.to_dict())]
        else:
            params = {"invoice": invoice_id, "expand": PAYMENTS_EXPAND, "limit": PAYMENTS_LIMIT}
            listing = self.api.call(self.api.client.v1.invoice_payments.list, params)
            charges = charges_of_invoice_payments(listing.to_dict())
        return combine([self._settled(charge, paid) for charge, paid in charges])

    def _settled(self, charge: Any, paid: int | None) -> Settlement:
        if isinstance(charge, str):  # not expanded: one more read
            charge = self.api.call(self.api.client.v1.charges.retrieve, charge).to_dict()
        txn = _balance_transaction_of(charge)
        amount = charge.get("amount") if isinstance(charge, Mapping) else None
        if paid is not None and isinstance(amount, int) and amount != paid:
            raise PermanentError(
                f"charge {charge.get('id')} paid more than this invoice; its balance transaction is shared"
            )
        if isinstance(txn, str):
            txn = self.api.call(self.api.client.v1.balance_transactions.retrieve, txn).to_dict()
        return settlement_from_balance_transaction(txn)
