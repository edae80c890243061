"""The contract every billing provider package fulfils, and the two ports the core calls.

A provider package (`webhook_app/providers/<name>/`) holds webhook verification, translation, the API
client and its operator commands. The core talks to it through:
- `Provider`: verify and parse a delivery (intake), translate a stored event into domain events
  (worker), its doctor lines, its dashboard links and its admin commands;
- `Billing`, the small runtime port: re-read an invoice, mint an update-payment link at click time, list
  unpaid invoices for the campaign;
- optionally `SettlementSource` (a provider that is also a `SettlementProvider`): what a paid invoice
  put in the account's balance, for finance (Stripe only so far).
Admin operations (portal configuration, endpoint registration, ...) stay inside the package, behind
its own commands: the runtime port never grows with them.
tests/unit/test_conformance.py checks every implementation, fakes included, against these protocols.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from webhook_app.domain import DomainEvent, InvoiceView, Settlement

if TYPE_CHECKING:
    import click
    from flask import Blueprint

    from webhook_app.ops.doctor import Check
    from webhook_app.services import Services


@dataclass(frozen=True)
class IncomingEvent:
    """A verified delivery, ready for the inbox: the envelope fields and the raw body as received."""

    event_id: str  # the provider's event id, or a dedupe key derived from the notification
    type: str
    occurred_at: datetime
    livemode: bool
    payload: str
    api_version: str | None = None
    ignored_reason: str | None = None  # stored but not processed (e.g. the other mode's event)


@dataclass(frozen=True)
class StoredEvent:
    """An inbox event handed to its provider's translator."""

    provider: str
    event_id: str
    type: str
    livemode: bool
    api_version: str | None
    occurred_at: datetime
    payload: dict[str, Any]


@dataclass(frozen=True)
class LinkTarget:
    """What an update-payment link is for: one dunning case (and the message that carried it)."""

    case_id: int
    customer_id: str
    invoice_id: str
    subscription_id: str | None
    currency: str
    notification_id: int | None = None


@dataclass(frozen=True)
class UpdateLink:
    """A freshly minted place where the customer updates their payment method."""

    url: str
    reference: str | None = None  # the provider's id for it (portal session, hosted page, transaction)


@runtime_checkable
class Billing(Protocol):
    """The runtime port: what sending, links and the campaign need from a billing system."""

    def retrieve_invoice(self, invoice_id: str) -> InvoiceView:
        """The invoice as the provider sees it now (events may be stale or out of order)."""
        ...

    def update_link(
        self, target: LinkTarget, *, idempotency_key: str | None = None, for_email: bool = False
    ) -> UpdateLink | None:
        """Mint an update-payment URL now; `for_email`: one to put in a message directly (None when the
        provider has no such URL and only the durable /r/ link works)."""
        ...

    def list_unpaid_invoices(self, *, customer_id: str | None = None) -> Iterator[InvoiceView]:
        """Every invoice the provider is still trying to collect (all pages), optionally of one customer."""
        ...


@runtime_checkable
class SettlementSource(Protocol):
    """Settled figures of paid invoices: looked up by the worker after the fact, never in a handler."""

    def settlement(self, invoice_id: str) -> Settlement | None:
        """What paying the invoice put in the balance, in the payout currency; None when no payment
        through the provider paid it (out of band, credit balance). Raises `SettlementNotReady` when it
        is paid but not settled yet, and the classified errors of webhook_app.errors otherwise."""
        ...


@runtime_checkable
class SettlementProvider(Protocol):
    """A provider that can report settlements (others leave recoveries without settled figures)."""

    @property
    def settlements(self) -> SettlementSource | None:
        """The settlement port, or None until the API credentials are set."""
        ...


@runtime_checkable
class Provider(Protocol):
    """A billing system, as the core sees it."""

    name: str  # "stripe": the URL segment, the `provider` column, the CLI's --provider value
    label: str  # "Stripe": for people
    handled_event_types: tuple[str, ...]

    @property
    def enabled(self) -> bool:
        """Credentials are set: intake accepts deliveries and the campaign can list invoices."""
        ...

    @property
    def billing(self) -> Billing | None:
        """The runtime port, or None until the API credentials are set."""
        ...

    def missing_for_intake(self) -> list[str]:
        """Variables the webhook endpoint cannot work without."""
        ...

    def missing_for_sending(self) -> list[str]:
        """Variables the worker needs to act on this provider's events."""
        ...

    def receive(self, headers: Mapping[str, str], body: bytes) -> IncomingEvent:
        """Verify a delivery (raw body, as received) and read its envelope; raises WebhookRejected."""
        ...

    def translate(self, event: StoredEvent) -> list[DomainEvent] | None:
        """The domain events a stored event means (None: a type this provider does not handle).

        May call the provider's API (thin payloads, or payloads that must be confirmed): raises the
        classified errors of webhook_app.errors.
        """
        ...

    def dashboard_url(self, kind: str, object_id: str, livemode: bool) -> str | None:
        """A link to the object ("invoice", "customer") in the provider's own dashboard."""
        ...

    def doctor(self, svc: Services) -> list[Check]:
        """Doctor lines for this provider: credentials valid, webhook configured, the provider's own dunning."""
        ...

    def register_commands(self, cli: click.Group) -> None:
        """Add the provider's operator commands (e.g. `portal setup`) to the CLI."""
        ...

    def blueprints(self) -> list[Blueprint]:
        """Pages the provider serves itself (e.g. `/pay/paddle/<token>`); none for most."""
        ...
