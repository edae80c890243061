"""Chargebee events into domain events, from what Chargebee's API confirms, never from the delivery alone.

Chargebee signs nothing: basic auth on the endpoint is the only check on a delivery, so whoever learns
those credentials could post any payload. Every handled event is therefore re-read with
`GET /events/{id}` and only the API's copy is translated: an id Chargebee does not know, or a delivery
whose type differs from Chargebee's record, stops as failed (`UnconfirmedEvent`) and changes nothing.
https://apidocs.chargebee.com/docs/api/events (retrieve an event; its `content` holds the resources as
they were when it occurred).

Events (API v2, https://apidocs.chargebee.com/docs/api/events):
- `payment_failed`: content `transaction`, `invoice` (`dunning_status`, `next_retry_at`,
  `dunning_attempts`), `customer`, `subscription`;
- `payment_succeeded`: the invoice is paid (a partial payment leaves it due: nothing to record);
- `invoice_generated`, `invoice_updated`: the invoice's `status` says paid, voided or written off
  (a write-off leaves `status` "paid" with `write_off_amount` set: not a recovery);
- `subscription_cancelled`: stop chasing the subscription's invoices (`cancel_reason` "not_paid" when
  dunning ran out);
- `payment_source_added`, `payment_source_updated`: the customer has a new or fixed payment method.

Invoice statuses (https://apidocs.chargebee.com/docs/api/invoices, `status`) onto the core's:
`payment_due` (being retried) and `not_paid` (retries exhausted, still owed) and `posted` are open,
`paid` is paid (or uncollectible when written off), `voided` is void, `pending` is a draft.
Amounts are integers in the currency's minor unit, as the core keeps them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
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
from webhook_app.errors import BadPayload, PermanentError, ResourceMissing
from webhook_app.payload import dig
from webhook_app.states import CaseStatus

PROVIDER = "chargebee"
STATUSES = {
    "payment_due": domain.OPEN,
    "not_paid": domain.OPEN,
    "posted": domain.OPEN,
    "paid": domain.PAID,
    "voided": domain.VOID,
    "pending": domain.DRAFT,
}
# A payment source in any other state (expiring, expired, invalid) is not a way to pay.
USABLE_SOURCE_STATUSES = frozenset({"valid", "pending_verification"})


class UnconfirmedEvent(PermanentError):
    """Chargebee's API does not confirm the delivered event: it is not acted on."""


class ChargebeeReader(Protocol):
    """What translation reads from Chargebee (`ChargebeeClient` fulfils it)."""

    def retrieve_event(self, event_id: str) -> dict[str, Any]: ...

    def retrieve_customer(self, customer_id: str) -> dict[str, Any]: ...


def is_live_site(site: str | None) -> bool:
    """Chargebee test sites are named `<site>-test`; every other site is live."""
    return bool(site) and not str(site).endswith("-test")


# -- resources --------------------------------------------------------------------------------------


def invoice_status(invoice: Mapping[str, Any]) -> str | None:
    """The core's status for a Chargebee invoice (a written-off invoice is uncollectible, not paid)."""
    status = payload.text(invoice.get("status"), "invoice.status")
    if status == "paid" and payload.integer(invoice.get("write_off_amount"), "invoice.write_off_amount", 0) > 0:
        return domain.UNCOLLECTIBLE
    return STATUSES.get(status, status) if status else None


def attempt_count(invoice: Mapping[str, Any]) -> int:
    """Charge attempts made on the invoice, the one that paid it included (the core's `attempt_count`).

    Chargebee lists its dunning attempts; an invoice in dunning has failed at least once even when none
    is listed yet, and a paid invoice whose list shows no successful attempt was paid by one more (a
    hosted page, a manual charge). A paid invoice with a failure before its payment thus counts two,
    which tells the core a late `payment_failed` was a recovery, not a new case.
    """
    attempts = invoice.get("dunning_attempts")
    listed = [a for a in attempts if isinstance(a, Mapping)] if isinstance(attempts, list) else []
    count = len(listed) or (1 if invoice.get("dunning_status") is not None else 0)
    if invoice_status(invoice) == domain.PAID and not any(a.get("txn_status") == "success" for a in listed):
        count += 1
    return count


def customer_name(customer: Mapping[str, Any] | None, invoice: Mapping[str, Any]) -> str | None:
    """The customer's full name, else their company, else the invoice's billing name."""
    for source in (customer, invoice.get("billing_address")):
        if not isinstance(source, Mapping):
            continue
        first = payload.display(source.get("first_name"), "first_name") or ""
        last = payload.display(source.get("last_name"), "last_name") or ""
        name = f"{first} {last}".strip() or payload.display(source.get("company"), "company")
        if name:
            return name[:255]
    return None


def invoice_view(
    invoice: Any,
    customer: Mapping[str, Any] | None,
    *,
    livemode: bool,
    failure_reason: str | None = None,
) -> InvoiceView:
    """An InvoiceView of a Chargebee invoice; email, name and country come from its customer."""
    if not isinstance(invoice, Mapping) or invoice.get("object", "invoice") != "invoice":
        raise BadPayload("content.invoice is not an invoice")
    invoice_id = payload.ident(invoice.get("id"), "invoice.id")
    customer_id = payload.ident(invoice.get("customer_id"), "invoice.customer_id")
    if isinstance(customer, Mapping) and customer.get("id") not in (None, customer_id):
        raise BadPayload("content.customer is not the invoice's customer")
    customer = customer if isinstance(customer, Mapping) else None
    remaining = payload.integer(invoice.get("amount_due"), "invoice.amount_due", 0)
    paid = payload.integer(invoice.get("amount_paid"), "invoice.amount_paid", 0)
    email = payload.email(customer.get("email"), "customer.email") if customer else None
    country = dig(customer, "billing_address", "country") or dig(invoice, "billing_address", "country")
    return InvoiceView(
        provider=PROVIDER,
        id=invoice_id,
        customer_id=customer_id,
        customer_email=email or payload.email(dig(invoice, "billing_address", "email"), "billing_address.email"),
        customer_name=customer_name(customer, invoice),
        number=invoice_id,  # Chargebee's invoice id is the invoice number customers see
        currency=payload.currency(invoice.get("currency_code"), "invoice.currency_code"),
        # The core's amount_due is what the customer was asked to pay; Chargebee's is what is still owed.
        amount_due=paid + remaining,
        amount_paid=paid,
        amount_remaining=remaining,
        attempt_count=attempt_count(invoice),
        next_payment_attempt=payload.unix_time(invoice.get("next_retry_at"), "invoice.next_retry_at"),
        hosted_invoice_url=None,  # Chargebee has no lasting hosted invoice page (PDFs are temporary links)
        status=invoice_status(invoice),
        subscription_id=payload.ref(invoice.get("subscription_id"), "invoice.subscription_id"),
        livemode=livemode,
        auto_collected=(customer or {}).get("auto_collection") != "off",
        paid_at=payload.unix_time(invoice.get("paid_at"), "invoice.paid_at"),
        failure_reason=failure_reason,
        customer_country=payload.country(country, "billing_address.country"),
    )


# -- events -----------------------------------------------------------------------------------------


class _Event:
    """One confirmed event: its time and content, and what reading its resources needs."""

    def __init__(self, event: Mapping[str, Any], reader: ChargebeeReader, livemode: bool):
        self.reader = reader
        self.livemode = livemode
        occurred_at = payload.unix_time(event.get("occurred_at"), "occurred_at")
        if occurred_at is None:
            raise BadPayload("Chargebee's event has no occurred_at")
        self.at: datetime = occurred_at
        content = event.get("content")
        self.content: Mapping[str, Any] = content if isinstance(content, Mapping) else {}

    def invoice(self, *, fetch_customer: bool = False, failure_reason: str | None = None) -> InvoiceView | None:
        invoice = self.content.get("invoice")
        if invoice is None:
            return None
        customer = self.content.get("customer")
        if not isinstance(customer, Mapping) and fetch_customer and isinstance(invoice, Mapping):
            customer = self.reader.retrieve_customer(payload.ident(invoice.get("customer_id"), "invoice.customer_id"))
        return invoice_view(invoice, customer, livemode=self.livemode, failure_reason=failure_reason)


def _failure_reason(content: Mapping[str, Any]) -> str | None:
    """The gateway's error code of the failed transaction, when the event carries it."""
    transaction = content.get("transaction")
    if not isinstance(transaction, Mapping) or transaction.get("status") not in (None, "failure"):
        return None
    return payload.display(transaction.get("error_code"), "transaction.error_code")


def _payment_failed(event: _Event) -> list[DomainEvent]:
    view = event.invoice(fetch_customer=True, failure_reason=_failure_reason(event.content))
    if view is None:  # a failed charge not for an invoice: no dunning case to open
        return []
    # The event itself is a failed attempt, whatever the invoice lists yet.
    return [PaymentFailed(replace(view, attempt_count=max(1, view.attempt_count)), failed_at=event.at)]


def _payment_succeeded(event: _Event) -> list[DomainEvent]:
    view = event.invoice()
    if view is None or not view.is_paid:  # a partial payment: the invoice is still due
        return []
    return [InvoicePaid(view, paid_at=view.paid_at or event.at)]


def _invoice_changed(event: _Event) -> list[DomainEvent]:
    view = event.invoice()
    if view is None:
        raise BadPayload("invoice event has no content.invoice")
    if view.is_paid:  # e.g. recorded as paid offline: settled like payment_succeeded (idempotent)
        return [InvoicePaid(view, paid_at=view.paid_at or event.at)]
    if view.status == domain.VOID:
        return [InvoiceClosed(view.id, CaseStatus.VOID, "invoice voided", at=event.at)]
    if view.status == domain.UNCOLLECTIBLE:
        return [InvoiceClosed(view.id, CaseStatus.UNCOLLECTIBLE, "invoice written off", at=event.at)]
    return []


def _subscription_cancelled(event: _Event) -> list[DomainEvent]:
    subscription = event.content.get("subscription")
    subscription_id = payload.ident(dig(subscription, "id"), "subscription.id")
    reason = payload.text(dig(subscription, "cancel_reason"), "subscription.cancel_reason")
    # not_paid is dunning running out; any other end (the customer or merchant cancelled) also means
    # the invoices are no longer chased, as with Stripe's customer.subscription.deleted.
    if reason == "not_paid":
        why = "subscription cancelled for non-payment"
    else:
        why = f"subscription cancelled ({reason})" if reason else "subscription cancelled"
    return [SubscriptionEnded(subscription_id, why[:255], at=event.at)]


def _payment_source_changed(event: _Event) -> list[DomainEvent]:
    source = event.content.get("payment_source")
    if isinstance(source, Mapping) and source.get("status") not in (None, *USABLE_SOURCE_STATUSES):
        return []  # e.g. payment_source_updated as a card turns expired: no new way to pay
    customer_id = payload.ref(dig(event.content, "customer", "id"), "customer.id") or payload.ref(
        dig(source, "customer_id"), "payment_source.customer_id"
    )
    if customer_id is None:
        raise BadPayload("payment source event names no customer")
    return [PaymentMethodUpdated(customer_id, at=event.at)]


TRANSLATORS: dict[str, Callable[[_Event], list[DomainEvent]]] = {
    "payment_failed": _payment_failed,
    "payment_succeeded": _payment_succeeded,
    "invoice_generated": _invoice_changed,
    "invoice_updated": _invoice_changed,
    "subscription_cancelled": _subscription_cancelled,
    "payment_source_added": _payment_source_changed,
    "payment_source_updated": _payment_source_changed,
}


def confirmed_event(reader: ChargebeeReader, event_id: str, delivered_type: str) -> dict[str, Any]:
    """Chargebee's own copy of the event; `UnconfirmedEvent` when the API does not vouch for the delivery."""
    try:
        event = reader.retrieve_event(event_id)
    except ResourceMissing:
        raise UnconfirmedEvent(
            f"Chargebee's API does not know event {event_id}: a forged or foreign delivery, not acted on"
        ) from None
    if event.get("id") != event_id:
        raise UnconfirmedEvent(f"Chargebee answered with another event than {event_id}: not acted on")
    if event.get("event_type") != delivered_type:
        raise UnconfirmedEvent(
            f"the delivery says {delivered_type} but Chargebee's event {event_id} is not: forged, not acted on"
        )
    return event


def translate(reader: ChargebeeReader, event_id: str, event_type: str, *, livemode: bool) -> list[DomainEvent] | None:
    """The domain events a stored Chargebee event means, read back from the API; None for unhandled types.

    Unhandled types are not re-read (no API call spent on what would be ignored anyway).
    """
    translator = TRANSLATORS.get(event_type)
    if translator is None:
        return None
    event = confirmed_event(reader, event_id, event_type)
    return translator(_Event(event, reader, livemode))
