"""Stripe: signed webhooks, both payload generations, Billing Portal deep links, and operator commands.

`StripeProvider` is what the core sees (`webhook_app.providers.base.Provider`): `webhook.py` verifies
deliveries, `translate.py` turns payloads into domain events, `client.py` is the runtime port,
`admin.py` the admin port, `settlement.py` the settled figures of paid invoices (balance transactions),
`commands.py` the operator commands and `doctor.py` their checks.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

import click
from flask import Blueprint

from webhook_app.config import Settings
from webhook_app.domain import DomainEvent, PaymentFailed
from webhook_app.errors import ConfigurationNeeded, PermanentError, WebhookRejected
from webhook_app.payload import dig, unix_time
from webhook_app.providers.base import Billing, IncomingEvent, SettlementSource, StoredEvent
from webhook_app.providers.stripe import translate, webhook
from webhook_app.providers.stripe.admin import StripeAdmin, StripeAdminPort
from webhook_app.providers.stripe.client import StripeApi, StripeBilling
from webhook_app.providers.stripe.settlement import StripeSettlements

if TYPE_CHECKING:
    from webhook_app.ops.doctor import Check
    from webhook_app.services import Services

log = logging.getLogger(__name__)
DASHBOARD = "https://dashboard.stripe.com"


class StripeProvider:
    """Stripe as the core sees it."""

    name = "stripe"
    label = "Stripe"
    handled_event_types = tuple(sorted(translate.TRANSLATORS))

    def __init__(
        self,
        settings: Settings,
        billing: Billing | None = None,
        admin: StripeAdminPort | None = None,
        settlements: SettlementSource | None = None,
    ):
        self.settings = settings.stripe
        self.tolerance = settings.webhook_tolerance_seconds
        api = StripeApi(settings.stripe) if settings.stripe.secret_key else None
        self._billing: Billing | None = billing
        self._settlements: SettlementSource | None = settlements
        if billing is None and api is not None:
            self._billing = StripeBilling(api, return_url=settings.links.return_url)
            # With a replaced runtime port (tests), no real Stripe reads behind its back either.
            self._settlements = settlements or StripeSettlements(api)
        self.admin: StripeAdminPort | None = admin or (StripeAdmin(api) if api is not None else None)

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    @property
    def billing(self) -> Billing | None:
        return self._billing

    @property
    def settlements(self) -> SettlementSource | None:
        """Balance transactions of paid invoices (`webhook_app.providers.base.SettlementProvider`)."""
        return self._settlements

    def missing_for_intake(self) -> list[str]:
        return [] if self.settings.webhook_secrets else ["STRIPE_WEBHOOK_SECRET"]

    def missing_for_sending(self) -> list[str]:
        return [] if self._billing is not None else ["STRIPE_SECRET_KEY"]

    def receive(self, headers: Mapping[str, str], body: bytes) -> IncomingEvent:
        """Check the signature with every STRIPE_WEBHOOK_SECRET, then the envelope."""
        webhook.verify_signature(body, headers.get("Stripe-Signature"), self.settings.webhook_secrets, self.tolerance)
        return self.incoming(body)

    def incoming(self, body: bytes) -> IncomingEvent:
        """The inbox row for an event body, delivered (and verified) or listed by the API (`events sync`).

        An event of the other mode than the key's (a test event on a live deployment) is stored as
        ignored, so it is answered 200 (Stripe stops retrying) and visible, but never acted on.
        """
        event = webhook.parse_event(body)
        expected = self.settings.livemode
        ignored = None
        if expected is not None and event["livemode"] != expected:
            ignored = "livemode does not match STRIPE_SECRET_KEY"
        occurred_at = unix_time(event["created"], "created")
        if occurred_at is None:  # parse_event checked it is there
            raise WebhookRejected("event field 'created' is missing or malformed")
        return IncomingEvent(
            event_id=event["id"],
            type=event["type"],
            occurred_at=occurred_at,
            livemode=event["livemode"],
            api_version=event.get("api_version"),
            payload=body.decode("utf-8"),
            ignored_reason=ignored,
        )

    def translate(self, event: StoredEvent) -> list[DomainEvent] | None:
        """Stripe's payload as domain events; a failure's reason is read from the API when the payload
        does not carry it (webhook payloads name the payment by id)."""
        events = translate.translate(event.payload)
        if not events or not isinstance(self._billing, StripeBilling):
            return events
        return [self._with_decline(e, event) if isinstance(e, PaymentFailed) else e for e in events]

    def _with_decline(self, failed: PaymentFailed, event: StoredEvent) -> PaymentFailed:
        if failed.decline is not None or not isinstance(self._billing, StripeBilling):
            return failed
        invoice = dig(event.payload, "data", "object")
        try:
            decline = self._billing.latest_decline(invoice, event.api_version)
        except (PermanentError, ConfigurationNeeded) as exc:
            # The reason is worth having, not worth stopping the recovery for (transient errors do
            # retry the event: the reason decides whether and when the customer is messaged).
            log.warning("could not read why the payment failed: %s", exc, extra={"event_id": event.event_id})
            return failed
        return replace(failed, decline=decline)

    def dashboard_url(self, kind: str, object_id: str, livemode: bool) -> str | None:
        """The Stripe Dashboard page of an invoice or customer (`/test/` for test-mode objects)."""
        path = {"invoice": "invoices", "customer": "customers"}.get(kind, kind)
        return f"{DASHBOARD}{'' if livemode else '/test'}/{path}/{object_id}"

    def doctor(self, svc: Services) -> list[Check]:
        from webhook_app.providers.stripe.doctor import checks

        return checks(svc, self)

    def register_commands(self, cli: click.Group) -> None:
        from webhook_app.providers.stripe.commands import register

        register(cli)

    def blueprints(self) -> list[Blueprint]:
        return []  # customers update their payment method on Stripe's own Billing Portal


def build(settings: Settings, billing: Billing | None = None) -> StripeProvider:
    """The Stripe provider from its settings group (`billing` replaces the runtime port in tests)."""
    return StripeProvider(settings, billing=billing)
