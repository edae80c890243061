"""Stripe's payloads, both API generations, turned into the core's invoice view and domain events.

Events arrive in the webhook endpoint's API version, which need not be the SDK's pinned one. Before
2025-03-31.basil an invoice carried `subscription`, `payment_intent`, `charge`, `paid` and
`paid_out_of_band` at the top level; since basil the subscription lives at
`parent.subscription_details.subscription` and payment state is only `status` (Stripe's changelog
"Adds support for multiple (partial) payments on invoices"). Amounts stay integers in minor units.

Money given back (https://docs.stripe.com/api/credit_notes/object): the same refund can appear in
`charge.refunded` (whose Charge names its invoice only before basil; `amount_refunded` is cumulative,
so rows are keyed `refund:<charge>:<total>` and only the increase counts) and in
`credit_note.created` (`post_payment_amount`: refunds, customer balance and out-of-band credit; before
basil its refund part is left to `charge.refunded`). Credit notes are dated when issued (`created`),
never `effective_at`, which can be backdated into a closed month.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from webhook_app import domain, payload
from webhook_app.domain import (
    CorrectionVoided,
    CustomerDeleted,
    DomainEvent,
    InvoiceClosed,
    InvoicePaid,
    InvoiceView,
    MoneyReturned,
    PaymentActionRequired,
    PaymentFailed,
    PaymentMethodUpdated,
    SubscriptionEnded,
)
from webhook_app.errors import BadPayload
from webhook_app.payload import dig
from webhook_app.providers.stripe.declines import decline_from_legacy_invoice
from webhook_app.states import CaseStatus, LedgerKind

PROVIDER = "stripe"
BASIL = "2025-03-31"  # API versions sort as strings by their date prefix
STATUSES = {"open": domain.OPEN, "paid": domain.PAID, "void": domain.VOID, "uncollectible": domain.UNCOLLECTIBLE}


def invoice_view(obj: Any) -> InvoiceView:
    """Normalize an invoice dict from an event's `data.object` or an API response."""
    if not isinstance(obj, Mapping) or obj.get("object", "invoice") != "invoice":
        raise BadPayload("event data.object is not an invoice")
    invoice_id = payload.text(obj.get("id"), "id")
    customer_id = payload.ref(obj.get("customer"), "customer")
    if not invoice_id or not customer_id or obj.get("currency") is None:
        raise BadPayload("invoice lacks id, customer or currency")
    status = payload.text(obj.get("status"), "status")
    if status is None and obj.get("paid") is True:
        status = "paid"
    subscription = payload.ref(dig(obj, "parent", "subscription_details", "subscription")) or payload.ref(
        obj.get("subscription")
    )
    collection_method = payload.text(obj.get("collection_method"), "collection_method")
    return InvoiceView(
        provider=PROVIDER,
        id=invoice_id,
        customer_id=customer_id,
        customer_email=payload.email(obj.get("customer_email")),
        customer_name=payload.display(obj.get("customer_name"), "customer_name"),
        number=payload.display(obj.get("number"), "number"),
        currency=payload.currency(obj.get("currency")),
        amount_due=payload.integer(obj.get("amount_due"), "amount_due", 0),
        amount_paid=payload.integer(obj.get("amount_paid"), "amount_paid", 0),
        amount_remaining=payload.integer(obj.get("amount_remaining"), "amount_remaining", 0),
        attempt_count=payload.integer(obj.get("attempt_count"), "attempt_count", 0),
        next_payment_attempt=payload.unix_time(obj.get("next_payment_attempt"), "next_payment_attempt"),
        hosted_invoice_url=payload.text(obj.get("hosted_invoice_url"), "hosted_invoice_url"),
        status=STATUSES.get(status, status) if status else None,
        subscription_id=subscription,
        livemode=bool(obj.get("livemode", False)),
        auto_collected=collection_method in (None, "charge_automatically"),
        paid_out_of_band=obj.get("paid_out_of_band") is True,
        paid_at=payload.unix_time(dig(obj, "status_transitions", "paid_at"), "status_transitions.paid_at"),
        failure_reason=_failure_reason(obj),
        customer_country=payload.country(dig(obj, "customer_address", "country"), "customer_address.country"),
    )


def _failure_reason(obj: Mapping[str, Any]) -> str | None:
    """The decline reason where the payload carries one (only when charge / PI were expanded)."""
    candidates = (
        dig(obj, "payment_intent", "last_payment_error", "decline_code"),
        dig(obj, "payment_intent", "last_payment_error", "code"),
        dig(obj, "charge", "failure_code"),
        dig(obj, "charge", "outcome", "reason"),
        dig(obj, "last_finalization_error", "code"),
    )
    for value in candidates:
        if isinstance(value, str) and value:
            return value[:255]
    return None


# -- events -----------------------------------------------------------------------------------------


def _created(event: Mapping[str, Any]) -> datetime:
    created = payload.unix_time(event.get("created"), "created")
    if created is None:
        raise BadPayload("event has no created time")
    return created


def _object(event: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    obj = dig(event, "data", "object")
    if not isinstance(obj, Mapping) or obj.get("object", kind) != kind or not isinstance(obj.get("id"), str):
        raise BadPayload(f"event data.object is not a {kind}")
    return obj


def _payment_failed(event: Mapping[str, Any]) -> list[DomainEvent]:
    obj = dig(event, "data", "object")
    # The reason, when the payload carries it (an expanded payment_intent or charge, pre-basil);
    # StripeProvider.translate reads it from the API otherwise.
    decline = decline_from_legacy_invoice(obj) if isinstance(obj, Mapping) else None
    return [PaymentFailed(invoice_view(obj), failed_at=_created(event), decline=decline)]


def _action_required(event: Mapping[str, Any]) -> list[DomainEvent]:
    return [PaymentActionRequired(invoice_view(dig(event, "data", "object")), at=_created(event))]


def _paid(event: Mapping[str, Any]) -> list[DomainEvent]:
    invoice = invoice_view(dig(event, "data", "object"))
    return [InvoicePaid(invoice, paid_at=invoice.paid_at or _created(event))]


def _closed(status: CaseStatus, reason: str) -> Callable[[Mapping[str, Any]], list[DomainEvent]]:
    def translate(event: Mapping[str, Any]) -> list[DomainEvent]:
        invoice = invoice_view(dig(event, "data", "object"))
        return [InvoiceClosed(invoice.id, status, reason, at=_created(event))]

    return translate


def _subscription_deleted(event: Mapping[str, Any]) -> list[DomainEvent]:
    subscription_id = payload.ident(dig(event, "data", "object", "id"), "subscription.id")
    return [SubscriptionEnded(subscription_id, "subscription canceled", at=_created(event))]


def _customer_updated(event: Mapping[str, Any]) -> list[DomainEvent]:
    """Only a new default payment method counts (customer.updated fires for any change)."""
    customer = dig(event, "data", "object") or {}
    previous = dig(event, "data", "previous_attributes") or {}
    changed = isinstance(previous.get("invoice_settings"), dict) and (
        "default_payment_method" in previous["invoice_settings"]
    )
    if changed and dig(customer, "invoice_settings", "default_payment_method"):
        return [PaymentMethodUpdated(payload.ident(customer.get("id"), "customer.id"), at=_created(event))]
    return []


def _customer_deleted(event: Mapping[str, Any]) -> list[DomainEvent]:
    """data.object is the customer as it was when deleted: erase what we hold about them."""
    customer = _object(event, "customer")
    return [CustomerDeleted(payload.ident(customer["id"], "customer.id"), at=_created(event))]


def _payment_method_attached(event: Mapping[str, Any]) -> list[DomainEvent]:
    customer_id = payload.ref(dig(event, "data", "object", "customer"), "payment_method.customer")
    if customer_id is None:  # a payment method attached to no customer concerns no case
        return []
    return [PaymentMethodUpdated(customer_id, at=_created(event))]


def _amount(obj: Mapping[str, Any], name: str, default: int | None = None) -> int:
    value = obj.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**62:
        raise BadPayload(f"{obj.get('object', 'object')} field {name!r} must be a non-negative integer")
    return value


def _charge_refunded(event: Mapping[str, Any]) -> list[DomainEvent]:
    charge = _object(event, "charge")
    invoice_id = payload.ref(charge.get("invoice"), "charge.invoice")
    if invoice_id is None:
        # Since 2025-03-31.basil a Charge no longer names its invoice; credit_note.created covers it.
        return []
    prefix = f"refund:{charge['id']}:"
    refunded = _amount(charge, "amount_refunded")
    return [
        MoneyReturned(
            invoice_id,
            key=f"{prefix}{refunded}",
            kind=LedgerKind.REFUND,
            amount=refunded,
            currency=payload.currency(charge.get("currency")),
            at=_created(event),
            cumulative_prefix=prefix,
        )
    ]


def _post_payment_amount(note: Mapping[str, Any]) -> int:
    if "post_payment_amount" in note and note["post_payment_amount"] is not None:
        return _amount(note, "post_payment_amount")
    if note.get("type") == "pre_payment":
        return 0  # reduced what was owed before payment: nothing recovered is given back
    return _amount(note, "amount")


def _refund_part(note: Mapping[str, Any], post_payment: int) -> int:
    """How much of a credit note went back as refunds (which `charge.refunded` also reports)."""
    refunds = note.get("refunds")
    if isinstance(refunds, list) and refunds:
        return sum(_amount(r, "amount_refunded", 0) for r in refunds if isinstance(r, Mapping))
    refund = note.get("refund")
    if isinstance(refund, Mapping) and isinstance(refund.get("amount"), int):
        return int(refund["amount"])
    if isinstance(refund, str):
        # An unexpanded refund id: all but the out-of-band part went back through the refund.
        out_of_band = note.get("out_of_band_amount") or 0
        return max(0, post_payment - (out_of_band if isinstance(out_of_band, int) else 0))
    return 0


def _credit_note_created(event: Mapping[str, Any]) -> list[DomainEvent]:
    note = _object(event, "credit_note")
    invoice_id = payload.ref(note.get("invoice"), "credit_note.invoice")
    if invoice_id is None:
        raise BadPayload("credit note has no invoice")
    if note.get("status") == "void":
        return []
    given_back = _post_payment_amount(note)
    version = event.get("api_version")
    if version is not None and str(version) < BASIL:
        given_back -= _refund_part(note, given_back)
    created = note.get("created") if isinstance(note.get("created"), int) else event.get("created")
    at = payload.unix_time(created, "credit_note.created") or _created(event)
    currency = note.get("currency")
    return [
        MoneyReturned(
            invoice_id,
            key=f"credit_note:{note['id']}",
            kind=LedgerKind.CREDIT_NOTE,
            amount=given_back,
            currency=payload.currency(currency) if currency is not None else "",
            at=at,
        )
    ]


def _credit_note_voided(event: Mapping[str, Any]) -> list[DomainEvent]:
    note = _object(event, "credit_note")
    return [CorrectionVoided(f"credit_note:{note['id']}", f"credit_note_void:{note['id']}", at=_created(event))]


TRANSLATORS: dict[str, Callable[[Mapping[str, Any]], list[DomainEvent]]] = {
    "invoice.payment_failed": _payment_failed,
    "invoice.payment_action_required": _action_required,
    "invoice.paid": _paid,
    "invoice.payment_succeeded": _paid,
    "invoice.voided": _closed(CaseStatus.VOID, "invoice voided"),
    "invoice.marked_uncollectible": _closed(CaseStatus.UNCOLLECTIBLE, "invoice marked uncollectible"),
    "customer.subscription.deleted": _subscription_deleted,
    "customer.updated": _customer_updated,
    "customer.deleted": _customer_deleted,
    "payment_method.attached": _payment_method_attached,
    "charge.refunded": _charge_refunded,
    "credit_note.created": _credit_note_created,
    "credit_note.voided": _credit_note_voided,
}


def translate(event: Mapping[str, Any]) -> list[DomainEvent] | None:
    """The domain events a Stripe event means; None for a type the app does not handle."""
    translator = TRANSLATORS.get(str(event.get("type")))
    return None if translator is None else translator(event)
