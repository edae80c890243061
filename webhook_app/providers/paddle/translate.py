"""Paddle Billing's payloads turned into the core's invoice view and domain events.

A Paddle *transaction* is what the core calls an invoice: one dunning case per transaction
(https://developer.paddle.com/api-reference/transactions/overview). Facts that shape this module:
- Webhooks carry no customer email (https://developer.paddle.com/webhooks/overview): a failure fetches
  the customer (`GET /customers/{id}`), and the sender re-reads the transaction with
  `include=customer,address` before every message.
- Amounts are strings of minor units in `details.totals` (`providers.paddle.money.minor_units`):
  `grand_total` is due after credits and before payments, `balance` is what is still owed.
- A failed attempt is an entry of `payments[]` with `status: "error"` and an `error_code`; there is no
  attempt counter and no next-retry time (Paddle Retain picks it), so `last_attempt` is False.
- `transaction.payment_failed` also fires when a card is declined inside a checkout the customer is
  looking at (origin `web`, `api`, `subscription_payment_method_change`), and `transaction.past_due`
  for unpaid manually-collected invoices. Neither is dunning: only automatically-collected charges of
  a subscription made without the customer (origins `subscription_recurring`, `subscription_charge`,
  `subscription_update`) open a case.
- Ordering is not guaranteed (https://developer.paddle.com/build/lifecycle/subscription-renewal-dunning):
  the core's case states absorb it (a payment seen before its failure becomes a recovery, never a message).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from webhook_app import domain, payload
from webhook_app.domain import (
    DomainEvent,
    InvoiceClosed,
    InvoicePaid,
    InvoiceView,
    PaymentFailed,
    PaymentMethodUpdated,
    SubscriptionEnded,
)
from webhook_app.errors import BadPayload
from webhook_app.payload import dig
from webhook_app.providers.base import StoredEvent
from webhook_app.providers.paddle.money import minor_units
from webhook_app.states import CaseStatus

PROVIDER = "paddle"
# https://developer.paddle.com/concepts/sell/transactions#transaction-status
STATUSES = {
    "draft": domain.DRAFT,
    "ready": domain.OPEN,
    "billed": domain.OPEN,
    "past_due": domain.OPEN,
    "paid": domain.PAID,
    "completed": domain.PAID,
    "canceled": domain.VOID,  # no longer collectable: a case for it is lost
}
# Charges Paddle makes on its own against a subscription's saved payment method: what dunning is for.
DUNNING_ORIGINS = frozenset({"subscription_recurring", "subscription_charge", "subscription_update"})
# Payment statuses that are not a charge attempt (yet, or at all).
NOT_ATTEMPTED = frozenset({"created", "dropped"})


class PaddleReads(Protocol):
    """The reads translation needs (`PaddleClient` provides them; unit tests pass a fake)."""

    def get_customer(self, ctm_id: str) -> dict[str, Any]:
        """The customer entity (email, name)."""
        ...

    def list_past_due_transactions(
        self,
        customer_id: str | None = None,
        *,
        subscription_id: str | None = None,
        include_customer: bool = False,
        include_address: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Every past_due transaction, filtered."""
        ...


def _payments(txn: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    payments = txn.get("payments")
    if payments is None:
        return []
    if not isinstance(payments, list):
        raise BadPayload("transaction field 'payments' must be a list")
    return [p for p in payments if isinstance(p, Mapping)]


def _latest(payments: Iterable[Mapping[str, Any]], status: str, time_field: str) -> Mapping[str, Any] | None:
    """The newest payment attempt with `status` (Paddle lists them newest first; the time decides)."""
    matching = [p for p in payments if p.get("status") == status]
    timed: list[tuple[datetime, Mapping[str, Any]]] = []
    for p in matching:
        moment = payload.iso_time(p.get(time_field), f"payments.{time_field}")
        if moment is not None:
            timed.append((moment, p))
    if timed:
        return max(timed, key=lambda pair: pair[0])[1]
    return matching[0] if matching else None


def invoice_view(
    txn: Any,
    *,
    livemode: bool,
    customer: Mapping[str, Any] | None = None,
    address: Mapping[str, Any] | None = None,
) -> InvoiceView:
    """Normalize a transaction (an event's `data`, or an API answer with `customer` / `address` included)."""
    if not isinstance(txn, Mapping):
        raise BadPayload("event data is not a transaction")
    txn_id = payload.ident(txn.get("id"), "transaction.id")
    if not txn_id.startswith("txn_"):
        raise BadPayload("transaction id must start with txn_")
    customer_id = payload.ref(txn.get("customer_id"), "transaction.customer_id")
    if customer_id is None:
        raise BadPayload("transaction has no customer_id")
    totals = dig(txn, "details", "totals")
    if not isinstance(totals, Mapping):
        raise BadPayload("transaction lacks details.totals")
    raw_status = payload.text(txn.get("status"), "transaction.status")
    status = STATUSES.get(raw_status or "", raw_status)
    grand_total = minor_units(totals.get("grand_total"), "details.totals.grand_total")
    balance_raw = totals.get("balance")
    if balance_raw is None:
        balance = 0 if status == domain.PAID else grand_total
    else:
        balance = minor_units(balance_raw, "details.totals.balance")
    payments = _payments(txn)
    failed = _latest(payments, "error", "created_at")
    captured = _latest(payments, "captured", "captured_at")
    paid_at = None
    if status == domain.PAID and captured is not None:
        paid_at = payload.iso_time(captured.get("captured_at"), "payments.captured_at")
    customer = customer if customer is not None else _mapping(txn.get("customer"))
    address = address if address is not None else _mapping(txn.get("address"))
    currency_code = txn.get("currency_code") or totals.get("currency_code")
    return InvoiceView(
        provider=PROVIDER,
        id=txn_id,
        customer_id=customer_id,
        customer_email=payload.email(customer.get("email"), "customer.email") if customer else None,
        customer_name=payload.display(customer.get("name"), "customer.name") if customer else None,
        number=payload.display(txn.get("invoice_number"), "transaction.invoice_number"),
        currency=payload.currency(currency_code, "transaction.currency_code"),
        amount_due=grand_total,
        amount_paid=max(0, grand_total - balance) if status == domain.PAID else 0,
        amount_remaining=balance,
        attempt_count=sum(1 for p in payments if p.get("status") not in NOT_ATTEMPTED),
        next_payment_attempt=None,
        last_attempt=False,  # Paddle retries on its own schedule, never announced; it cancels when done
        hosted_invoice_url=None,  # Paddle's invoice PDF URL is temporary (GET /transactions/{id}/invoice)
        status=status,
        subscription_id=payload.ref(txn.get("subscription_id"), "transaction.subscription_id"),
        livemode=livemode,
        auto_collected=txn.get("collection_mode", "automatic") == "automatic",
        paid_at=paid_at,
        failure_reason=payload.display(failed.get("error_code"), "payments.error_code") if failed else None,
        customer_country=payload.country(address.get("country_code"), "address.country_code") if address else None,
    )


def _mapping(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def is_dunning_charge(txn: Mapping[str, Any]) -> bool:
    """A charge Paddle made on its own against a subscription (not a checkout the customer is looking at)."""
    return (
        txn.get("origin") in DUNNING_ORIGINS
        and txn.get("collection_mode", "automatic") == "automatic"
        and isinstance(txn.get("subscription_id"), str)
    )


# -- events -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """What translating one event may use: Paddle's API and the mode the key works in."""

    reads: PaddleReads
    livemode: bool


def _data(event: StoredEvent) -> Mapping[str, Any]:
    data = event.payload.get("data")
    if not isinstance(data, Mapping):
        raise BadPayload("event has no data object")
    return data


def _failed(event: StoredEvent, src: Source) -> list[DomainEvent]:
    """transaction.payment_failed / transaction.past_due: the case of that transaction."""
    txn = _data(event)
    if not is_dunning_charge(txn):
        return []
    customer_id = payload.ident(txn.get("customer_id"), "transaction.customer_id")
    invoice = invoice_view(txn, livemode=src.livemode, customer=src.reads.get_customer(customer_id))
    return [PaymentFailed(invoice, failed_at=event.occurred_at)]


def _subscription_past_due(event: StoredEvent, src: Source) -> list[DomainEvent]:
    """subscription.past_due: the case of each of its past_due transactions (usually one)."""
    sub = _data(event)
    sub_id = payload.ident(sub.get("id"), "subscription.id")
    customer_id = payload.ident(sub.get("customer_id"), "subscription.customer_id")
    if sub.get("collection_mode", "automatic") != "automatic":
        return []  # invoiced subscriptions: the customer pays each invoice by hand, no dunning
    events: list[DomainEvent] = []
    customer: Mapping[str, Any] | None = None
    for txn in src.reads.list_past_due_transactions(customer_id, subscription_id=sub_id, include_customer=True):
        if not is_dunning_charge(txn):
            continue
        if not isinstance(txn.get("customer"), Mapping):  # left out when the key may not read customers
            customer = customer or src.reads.get_customer(customer_id)
        invoice = invoice_view(txn, livemode=src.livemode, customer=customer)
        events.append(PaymentFailed(invoice, failed_at=event.occurred_at))
    return events  # none yet: the transaction's own past_due event opens the case


def _paid(event: StoredEvent, src: Source) -> list[DomainEvent]:
    """transaction.paid / transaction.completed: a recovery when the transaction had failed."""
    txn = _data(event)
    if not is_dunning_charge(txn):
        return []
    invoice = invoice_view(txn, livemode=src.livemode)
    if not invoice.is_paid:
        raise BadPayload("a paid/completed event whose transaction is not paid")
    return [InvoicePaid(invoice, paid_at=invoice.paid_at or event.occurred_at)]


def _transaction_canceled(event: StoredEvent, src: Source) -> list[DomainEvent]:
    """transaction.canceled: dunning gave up on it (Retain paused or canceled the subscription)."""
    txn_id = payload.ident(_data(event).get("id"), "transaction.id")
    return [InvoiceClosed(txn_id, CaseStatus.VOID, "transaction canceled", at=event.occurred_at)]


def _subscription_canceled(event: StoredEvent, src: Source) -> list[DomainEvent]:
    sub_id = payload.ident(_data(event).get("id"), "subscription.id")
    return [SubscriptionEnded(sub_id, "subscription canceled", at=event.occurred_at)]


def _payment_method_saved(event: StoredEvent, src: Source) -> list[DomainEvent]:
    """A new saved payment method: pause the customer's sequences until Paddle collects with it.

    A method saved while buying a one-time item (`origin: saved_during_purchase`) is not one Paddle's
    subscription retries use, so it pauses nothing.
    """
    method = _data(event)
    if method.get("origin") == "saved_during_purchase":
        return []
    customer_id = payload.ident(method.get("customer_id"), "payment_method.customer_id")
    return [PaymentMethodUpdated(customer_id, at=event.occurred_at)]


TRANSLATORS: dict[str, Callable[[StoredEvent, Source], list[DomainEvent]]] = {
    "transaction.payment_failed": _failed,
    "transaction.past_due": _failed,
    "subscription.past_due": _subscription_past_due,
    "transaction.paid": _paid,
    "transaction.completed": _paid,
    "transaction.canceled": _transaction_canceled,
    "subscription.canceled": _subscription_canceled,
    "payment_method.saved": _payment_method_saved,
}


def translate(event: StoredEvent, src: Source) -> list[DomainEvent] | None:
    """The domain events a Paddle event means; None for a type the app does not handle."""
    translator = TRANSLATORS.get(event.type)
    return None if translator is None else translator(event, src)
