"""Recurly's thin JSON notifications, read back through the API, turned into the core's domain events.

A JSON notification names its object and nothing more (`{id, object_type, event_type, event_time,
invoice_number | account_code}`), so every translator re-reads the invoice and acts on its state *now*:
deliveries can be late (sandbox up to 48 h), duplicated or out of order, and the invoice's current
state is the truth. Recurly invoices carry their payment attempts (`transactions`), which give the
attempt count, the decline reason and whether the payment was automatic.

Events (https://docs.recurly.com/recurly-subscriptions/docs/charge-invoice-notifications,
.../account-notifications, .../dunning-events-notifications):
- `charge_invoice.past_due`: a charge was declined (or a manual invoice reached its net terms: not a
  failed payment, nothing to do) -> PaymentFailed;
- `dunning_event.created`: Recurly's dunning acted on a still past-due invoice (it fires on every
  step) -> PaymentFailed, which starts a new message sequence only after a pause (the customer updated
  the card and Recurly's retry failed again), never a second one within an episode;
- `charge_invoice.paid` -> InvoicePaid; `charge_invoice.failed` (failed directly or at the end of the
  dunning cycle) -> InvoiceClosed as uncollectible;
- `billing_info.updated` -> PaymentMethodUpdated (pause), and with RECURLY_COLLECT_ON_UPDATE a
  collection of the account's past-due invoices right away (`collect_past_due`).

Ids: our invoice id is Recurly's invoice *number* (what notifications carry, what the admin shows;
looked up as `number-<n>`), our customer id the account *code* (what `billing_info.updated` carries;
it cannot change once the account exists). Amounts are decimals in major units, converted exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from webhook_app import domain, payload
from webhook_app.domain import (
    DomainEvent,
    InvoiceClosed,
    InvoicePaid,
    InvoiceView,
    PaymentFailed,
    PaymentMethodUpdated,
)
from webhook_app.errors import BadPayload
from webhook_app.money import to_minor_units
from webhook_app.payload import dig
from webhook_app.providers.recurly.client import RecurlyRefused
from webhook_app.states import CaseStatus

log = logging.getLogger(__name__)

PROVIDER = "recurly"
# Invoice states (InvoiceStateEnum) -> the core's statuses. `closed` belongs to credit and legacy
# invoices; a charge invoice reported closed is settled by its balance (see `_status`).
STATES = {
    "pending": domain.OPEN,
    "processing": domain.OPEN,
    "past_due": domain.OPEN,
    "open": domain.OPEN,
    "paid": domain.PAID,
    "failed": domain.UNCOLLECTIBLE,
    "voided": domain.VOID,
}
# A transaction that reached the gateway (pending / processing / scheduled ones have not been decided).
ATTEMPTED = frozenset({"success", "declined", "error", "chargeback", "void"})
# Recurly may collect a past-due balance itself when billing info is saved (v2 docs, "Update Account's
# Billing Info": "If the account has a past due invoice, the outstanding balance will be collected");
# such a transaction is stamped around the notification's event_time.
COLLECTED_SINCE_UPDATE_MARGIN = timedelta(minutes=1)


class RecurlyReads(Protocol):
    """What translation reads from (and, for collect-on-update, does at) Recurly."""

    def invoice(self, number: str) -> Mapping[str, Any]:
        """The Invoice with this number, as the API returns it now."""
        ...

    def livemode(self) -> bool:
        """Whether the key's site is a production site."""
        ...

    def past_due_invoices(self, account_code: str) -> Iterable[Mapping[str, Any]]:
        """The account's invoices in state past_due."""
        ...

    def collect(self, number: str) -> Mapping[str, Any]:
        """Force a collection attempt now; the updated Invoice, or RecurlyRefused when declined."""
        ...


# -- the invoice view -----------------------------------------------------------------------------


def _transactions(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The invoice's purchase attempts that reached the gateway, oldest first (the API's order)."""
    items = obj.get("transactions")
    if not isinstance(items, list):
        return []
    return [
        t
        for t in items
        if isinstance(t, Mapping) and t.get("type", "purchase") == "purchase" and t.get("status") in ATTEMPTED
    ]


def _succeeded(transaction: Mapping[str, Any]) -> bool:
    return transaction.get("success") is True or transaction.get("status") == "success"


def _amount(obj: Mapping[str, Any], name: str, currency: str) -> int:
    value = obj.get(name)
    return 0 if value is None else to_minor_units(value, currency, f"invoice.{name}")


def _status(state: str | None, balance: int) -> str | None:
    if state == "closed":
        return domain.PAID if balance == 0 else domain.UNCOLLECTIBLE
    return STATES.get(state or "", state)


def _customer_name(account: Mapping[str, Any]) -> str | None:
    first = payload.text(account.get("first_name"), "account.first_name") or ""
    last = payload.text(account.get("last_name"), "account.last_name") or ""
    full = f"{first} {last}".strip() or payload.text(account.get("company"), "account.company")
    return payload.display(full, "account.name") if full else None


def invoice_view(obj: Mapping[str, Any], livemode: bool) -> InvoiceView:
    """A Recurly Invoice (API v2021-02-25) as the core's invoice view, amounts in exact minor units."""
    if not isinstance(obj, Mapping) or obj.get("object", "invoice") != "invoice":
        raise BadPayload("the Recurly answer is not an invoice")
    number = payload.ident(obj.get("number"), "invoice.number")
    account = obj.get("account")
    if not isinstance(account, Mapping):
        raise BadPayload("the Recurly invoice has no account")
    code = payload.ident(account.get("code"), "invoice.account.code")
    currency_code = payload.text(obj.get("currency"), "invoice.currency")
    currency = payload.currency(currency_code, "invoice.currency")
    total = _amount(obj, "total", currency)
    paid = _amount(obj, "paid", currency)
    balance = _amount(obj, "balance", currency)
    state = payload.text(obj.get("state"), "invoice.state")
    status = _status(state, balance)
    attempts = _transactions(obj)
    declined = [t for t in attempts if not _succeeded(t)]
    subscriptions = obj.get("subscription_ids")
    subscription = subscriptions[0] if isinstance(subscriptions, list) and subscriptions else None
    paid_automatically = any(_succeeded(t) and t.get("collection_method", "automatic") == "automatic" for t in attempts)
    return InvoiceView(
        provider=PROVIDER,
        id=number,
        customer_id=code,
        customer_email=payload.email(account.get("email"), "invoice.account.email"),
        customer_name=_customer_name(account),
        number=number,
        currency=currency,
        amount_due=total,
        amount_paid=paid,
        amount_remaining=balance,
        attempt_count=len(attempts),
        next_payment_attempt=None,  # Recurly does not say when its dunning retries next
        # The hosted invoice URL embeds the account's hosted_login_token (a login): never stored or emailed.
        hosted_invoice_url=None,
        status=status,
        subscription_id=payload.ident(subscription, "invoice.subscription_ids") if subscription else None,
        livemode=livemode,
        auto_collected=obj.get("collection_method", "automatic") == "automatic",
        paid_out_of_band=status == domain.PAID and not paid_automatically,
        paid_at=payload.iso_time(obj.get("closed_at"), "invoice.closed_at") if status == domain.PAID else None,
        failure_reason=payload.display(declined[-1].get("status_code"), "transaction.status_code")
        if declined
        else None,
        customer_country=payload.country(dig(obj, "address", "country"), "invoice.address.country")
        or payload.country(dig(account, "address", "country"), "account.address.country"),
        # Recurly's last dunning step has gone out, or the invoice failed: no further retry to wait for.
        last_attempt=obj.get("final_dunning_event") is True or state == "failed",
    )


def as_failed(view: InvoiceView, obj: Mapping[str, Any]) -> InvoiceView:
    """The invoice as it was when its payment failed (it has been paid or closed since)."""
    declined = sum(1 for t in _transactions(obj) if not _succeeded(t))
    return replace(
        view,
        status=domain.OPEN,
        attempt_count=max(1, declined),
        amount_paid=0,
        amount_remaining=view.amount_due,
        paid_at=None,
        paid_out_of_band=False,
    )


# -- notifications ----------------------------------------------------------------------------------


def _event_time(event: Mapping[str, Any]) -> datetime:
    at = payload.iso_time(event.get("event_time"), "event_time")
    if at is None:
        raise BadPayload("notification has no event_time")
    return at


def _invoice_number(event: Mapping[str, Any]) -> str:
    number = event.get("invoice_number")
    # The docs show a JSON integer (`"invoice_number": 1031`); the API spells numbers as strings.
    if isinstance(number, int) and not isinstance(number, bool) and number > 0:
        return str(number)
    return payload.ident(number, "invoice_number")


def _is_charge(obj: Mapping[str, Any]) -> bool:
    return obj.get("type", "charge") in ("charge", "legacy")


def settled(view: InvoiceView, at: datetime) -> list[DomainEvent]:
    """What a closed invoice means for its case (nothing for one still being collected)."""
    if view.status == domain.PAID:
        return [InvoicePaid(view, paid_at=view.paid_at or at)]
    if view.status == domain.VOID:
        return [InvoiceClosed(view.id, CaseStatus.VOID, "invoice voided in Recurly", at)]
    if view.status == domain.UNCOLLECTIBLE:
        return [InvoiceClosed(view.id, CaseStatus.UNCOLLECTIBLE, "invoice failed: Recurly's dunning ended", at)]
    return []


def _payment_failed(event: Mapping[str, Any], reads: RecurlyReads) -> list[DomainEvent]:
    at = _event_time(event)
    obj = reads.invoice(_invoice_number(event))
    view = invoice_view(obj, reads.livemode())
    if not _is_charge(obj) or not view.auto_collected:
        # A manual invoice past its net terms: no payment failed, no card to update.
        return []
    if view.status == domain.OPEN:
        return [PaymentFailed(view, failed_at=at)]
    # Paid, voided or failed since the failure (a late delivery): record the failure, then its outcome,
    # so the case exists for finance and its messages are cancelled before any is sent.
    return [PaymentFailed(as_failed(view, obj), failed_at=at), *settled(view, at)]


def _invoice_settled(event: Mapping[str, Any], reads: RecurlyReads) -> list[DomainEvent]:
    """`charge_invoice.paid` / `.failed`: act on the state the invoice is in now."""
    at = _event_time(event)
    obj = reads.invoice(_invoice_number(event))
    return settled(invoice_view(obj, reads.livemode()), at)


def _billing_info_updated(event: Mapping[str, Any], reads: RecurlyReads, collect: bool) -> list[DomainEvent]:
    code = payload.ident(event.get("account_code"), "account_code")
    at = _event_time(event)
    events: list[DomainEvent] = [PaymentMethodUpdated(code, at=at)]
    if collect:
        events.extend(collect_past_due(reads, code, since=at))
    return events


def collect_past_due(reads: RecurlyReads, account_code: str, since: datetime) -> list[DomainEvent]:
    """Charge the account's past-due invoices now with the billing info saved at `since`.

    Idempotent through Recurly's own state, since Recurly takes no idempotency key: an invoice is
    collected only while it is past due and has no payment attempt from `since` on (less a minute). A
    replayed or retried notification, or one whose billing-info change Recurly already collected on,
    finds that attempt and charges nothing. A decline is a new failure (after the pause, so a new
    message sequence); a success is the payment.
    """
    events: list[DomainEvent] = []
    livemode = reads.livemode()
    for obj in reads.past_due_invoices(account_code):
        view = invoice_view(obj, livemode)
        if view.status != domain.OPEN or not view.auto_collected or _attempted_since(obj, since):
            continue
        try:
            collected = reads.collect(view.id)
        except RecurlyRefused as exc:
            if exc.error_type != "transaction":
                # Not collectible any more (paid or closed meanwhile): its own notification says how.
                log.info("Recurly refused the collection of invoice %s: %s", view.id, exc)
                continue
            log.info("collection after a billing info update was declined (invoice %s)", view.id)
            now = invoice_view(reads.invoice(view.id), livemode)
            events.append(PaymentFailed(now, failed_at=since))
            continue
        after = invoice_view(collected, livemode)
        events.extend(settled(after, since))
    return events


def _attempted_since(obj: Mapping[str, Any], since: datetime) -> bool:
    threshold = since - COLLECTED_SINCE_UPDATE_MARGIN
    for transaction in _transactions(obj):
        created = payload.iso_time(transaction.get("created_at"), "transaction.created_at")
        if created is not None and created >= threshold:
            return True
    return False


Translator = Callable[[Mapping[str, Any], RecurlyReads], list[DomainEvent]]

TRANSLATORS: dict[str, Translator] = {
    "charge_invoice.past_due": _payment_failed,
    "dunning_event.created": _payment_failed,
    "charge_invoice.paid": _invoice_settled,
    "charge_invoice.failed": _invoice_settled,
}
EVENT_TYPES = tuple(sorted((*TRANSLATORS, "billing_info.updated")))


def translate(
    event: Mapping[str, Any], reads: RecurlyReads, *, collect_on_update: bool = False
) -> list[DomainEvent] | None:
    """The domain events a Recurly notification means; None for a type the app does not handle."""
    name = f"{event.get('object_type')}.{event.get('event_type')}"
    if name == "billing_info.updated":
        return _billing_info_updated(event, reads, collect=collect_on_update)
    translator = TRANSLATORS.get(name)
    return None if translator is None else translator(event, reads)
