"""Braintree notifications (and subscriptions read from the API) -> the core's InvoiceView and domain events.

A case is one failure episode of a subscription (`episodes.py`): its "invoice" is the subscription's
past-due balance. Notification kinds (https://developer.paypal.com/braintree/docs/reference/general/
webhooks/subscription/python):
- `subscription_charged_unsuccessfully` (every failed recurring charge; not on manual retries) and
  `subscription_went_past_due` (the first failure of a billing cycle): PaymentFailed. The customer is
  read from the API for their name and email (a notification carries only the transactions' customer id).
- `subscription_charged_successfully` and `subscription_went_active` (a successful charge moves a Past Due
  subscription back to Active, manual retries included): InvoicePaid when the charge ended an episode;
  a renewal or a first charge is nothing to us.
- `subscription_canceled` (the merchant's retry rules gave up, or someone canceled) and
  `subscription_expired`: SubscriptionEnded, which closes the subscription's open cases as canceled.
Both failure kinds, Braintree's hourly resends and out-of-order deliveries land on the same case: the
invoice id is the same for every notification about one episode.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Protocol

from webhook_app import domain, payload
from webhook_app.domain import DomainEvent, InvoicePaid, InvoiceView, PaymentFailed, SubscriptionEnded
from webhook_app.errors import BadPayload, TransientError
from webhook_app.providers.base import StoredEvent
from webhook_app.providers.braintree import episodes
from webhook_app.providers.braintree.episodes import Episode

PROVIDER = "braintree"
FAILURE_KINDS = ("subscription_charged_unsuccessfully", "subscription_went_past_due")
RECOVERY_KINDS = ("subscription_charged_successfully", "subscription_went_active")
END_KINDS = {"subscription_canceled": "subscription canceled", "subscription_expired": "subscription expired"}
HANDLED_KINDS = tuple(sorted((*FAILURE_KINDS, *RECOVERY_KINDS, *END_KINDS)))
ENDED_STATUSES = ("Canceled", "Expired")
PAST_DUE = "Past Due"
CONFIGURATION_RETRY_SECONDS = 3600.0


class SubscriptionReader(Protocol):
    """What translation reads from Braintree (`BraintreeClient` fulfils it)."""

    def find_subscription(self, sub_id: str) -> dict[str, Any]: ...

    def find_customer(self, customer_id: str) -> dict[str, Any]: ...


def _minor(txn: Mapping[str, Any] | None, name: str) -> int:
    value = txn.get("amount_minor") if txn else None
    return payload.integer(value, name, 0)


def _status(subscription: Mapping[str, Any], episode: Episode) -> str:
    if episode.payment is not None:
        return domain.PAID
    status = subscription.get("status")
    if status in ENDED_STATUSES:
        return domain.CANCELED
    if status in (PAST_DUE, None) or (subscription.get("balance_minor") or 0) > 0:
        return domain.OPEN
    # Active again without a charge after the run: the merchant cleared the balance (nothing came back).
    return domain.VOID


def _customer_name(customer: Mapping[str, Any]) -> str | None:
    full = " ".join(p for p in (customer.get("first_name"), customer.get("last_name")) if p)
    return payload.display(full or customer.get("company"), "customer.name")


def _country(customer: Mapping[str, Any]) -> str | None:
    for address in customer.get("addresses") or []:
        code = payload.country(address.get("country_code_alpha2"), "customer.addresses.country_code_alpha2")
        if code:
            return code
    return None


def _failure_reason(txn: Mapping[str, Any]) -> str | None:
    """The processor's answer, e.g. "2001 Insufficient Funds" (or the status for a gateway rejection)."""
    parts = [txn.get("processor_response_code"), txn.get("processor_response_text")]
    text = " ".join(str(p) for p in parts if p) or txn.get("status")
    return payload.display(text, "transaction.processor_response_text")


def invoice_view(
    subscription: Mapping[str, Any],
    episode: Episode,
    *,
    customer: Mapping[str, Any] | None = None,
    livemode: bool = False,
) -> InvoiceView:
    """The episode's past-due balance as the core's invoice (paid when a charge ended the run)."""
    currency = subscription.get("currency")
    if not currency:
        raise BadPayload("Braintree subscription lists no transaction with a currency")
    customer_id = payload.ident(subscription.get("customer_id"), "subscription.transactions.customer.id")
    status = _status(subscription, episode)
    failures = len(episode.failures)
    if status == domain.PAID:
        amount_due = amount_paid = _minor(episode.payment, "transaction.amount")
        remaining, attempts = 0, failures + 1
    else:
        balance = payload.integer(subscription.get("balance_minor"), "subscription.balance", 0)
        amount_due = balance if balance > 0 else _minor(episode.newest_failure, "transaction.amount")
        amount_paid, remaining, attempts = 0, amount_due, failures
    customer = customer or {}
    return InvoiceView(
        provider=PROVIDER,
        id=episode.invoice_id,
        customer_id=customer_id,
        customer_email=payload.email(customer.get("email"), "customer.email"),
        customer_name=_customer_name(customer),
        number=None,  # Braintree has no invoice number; messages show the amount and the company
        currency=payload.currency(currency, "transaction.currency_iso_code"),
        amount_due=amount_due,
        amount_paid=amount_paid,
        amount_remaining=remaining,
        attempt_count=attempts,
        # Braintree exposes no retry date; its next attempt at the latest is the next billing date (a past-due
        # subscription keeps billing). Without one the final notice would go out with the first message.
        next_payment_attempt=(
            payload.iso_time(subscription.get("next_billing_date"), "subscription.next_billing_date")
            if status == domain.OPEN
            else None
        ),
        hosted_invoice_url=None,
        status=status,
        subscription_id=episode.subscription_id,
        livemode=livemode,
        paid_at=(
            payload.iso_time(episode.payment.get("created_at"), "transaction.created_at") if episode.payment else None
        ),
        failure_reason=_failure_reason(episode.newest_failure),
        customer_country=_country(customer),
    )


# -- notifications -------------------------------------------------------------------------------------


def _subscription(event: StoredEvent) -> dict[str, Any]:
    subscription = event.payload.get("subscription")
    if not isinstance(subscription, dict) or not isinstance(subscription.get("id"), str):
        raise BadPayload(f"Braintree {event.type} notification has no subscription")
    return subscription


def _reader(client: SubscriptionReader | None) -> SubscriptionReader:
    if client is None:
        # Webhooks verify with the keys alone; acting on them needs the merchant id too. Not a bug: retry
        # once an operator has set it (doctor names it).
        raise TransientError(
            "BRAINTREE_MERCHANT_ID, BRAINTREE_PUBLIC_KEY and BRAINTREE_PRIVATE_KEY are needed to read the customer",
            retry_after=CONFIGURATION_RETRY_SECONDS,
        )
    return client


def _failed(event: StoredEvent, client: SubscriptionReader | None, livemode: bool) -> list[DomainEvent]:
    subscription = _subscription(event)
    episode = episodes.latest(subscription)
    reader = _reader(client)
    if episode is None or not subscription.get("customer_id"):
        # A skeletal notification (the SDK's own sample has one bare transaction): read the subscription.
        subscription = reader.find_subscription(subscription["id"])
        episode = episodes.latest(subscription)
        if episode is None:
            return []  # no failed charge to chase
    customer = reader.find_customer(payload.ident(subscription.get("customer_id"), "subscription.customer_id"))
    invoice = invoice_view(subscription, episode, customer=customer, livemode=livemode)
    events: list[DomainEvent] = []
    if invoice.is_paid:
        # Read after the run ended: the failure opens the case, the payment closes it as a recovery.
        failed = replace(
            invoice,
            status=domain.OPEN,
            amount_paid=0,
            amount_remaining=invoice.amount_due,
            attempt_count=len(episode.failures),
            paid_at=None,
        )
        events.append(PaymentFailed(failed, failed_at=event.occurred_at))
        events.append(InvoicePaid(invoice, paid_at=invoice.paid_at or event.occurred_at))
    else:
        events.append(PaymentFailed(invoice, failed_at=event.occurred_at))
    return events


def _paid(event: StoredEvent, client: SubscriptionReader | None, livemode: bool) -> list[DomainEvent]:
    subscription = _subscription(event)
    episode = episodes.latest(subscription)
    if episode is None or episode.payment is None:
        return []  # a renewal or a first charge: no failure came before it
    invoice = invoice_view(subscription, episode, livemode=livemode)
    return [InvoicePaid(invoice, paid_at=invoice.paid_at or event.occurred_at)]


def _ended(event: StoredEvent, client: SubscriptionReader | None, livemode: bool) -> list[DomainEvent]:
    subscription = _subscription(event)
    return [SubscriptionEnded(subscription["id"], END_KINDS[event.type], at=event.occurred_at)]


Translator = Callable[[StoredEvent, SubscriptionReader | None, bool], list[DomainEvent]]
TRANSLATORS: dict[str, Translator] = {
    **{kind: _failed for kind in FAILURE_KINDS},
    **{kind: _paid for kind in RECOVERY_KINDS},
    **{kind: _ended for kind in END_KINDS},
}


def translate(event: StoredEvent, client: SubscriptionReader | None, *, livemode: bool) -> list[DomainEvent] | None:
    """The domain events a stored Braintree notification means; None for a kind the app does not handle."""
    translator = TRANSLATORS.get(event.type)
    return None if translator is None else translator(event, client, livemode)
