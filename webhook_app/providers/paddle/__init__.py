"""Paddle Billing: signed webhooks, transactions as invoices, and our own update page with Paddle.js.

`PaddleProvider` is what the core sees (`webhook_app.providers.base.Provider`): `webhook.py` verifies
deliveries, `translate.py` turns payloads into domain events (fetching the customer, since Paddle's
webhooks carry no email), `client.py` is the HTTP client, `billing.py` the runtime port, `pages.py`
the `/pay/paddle/<token>` page (`checkout.py`: its Paddle.js and policy) and `doctor.py` the checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC
from typing import TYPE_CHECKING

import click
from flask import Blueprint

from webhook_app.config import Settings
from webhook_app.domain import DomainEvent
from webhook_app.errors import ConfigurationNeeded, WebhookRejected
from webhook_app.providers.base import Billing, IncomingEvent, StoredEvent
from webhook_app.providers.paddle import translate, webhook
from webhook_app.providers.paddle.billing import PaddleBilling
from webhook_app.providers.paddle.client import PaddleClient

if TYPE_CHECKING:
    from webhook_app.ops.doctor import Check
    from webhook_app.services import Services

DASHBOARDS = {"production": "https://vendors.paddle.com", "sandbox": "https://sandbox-vendors.paddle.com"}
DASHBOARD_PATHS = {"invoice": "transactions-v2", "customer": "customers-v2", "subscription": "subscriptions-v2"}


class PaddleProvider:
    """Paddle Billing as the core sees it."""

    name = "paddle"
    label = "Paddle"
    handled_event_types = tuple(sorted(translate.TRANSLATORS))

    def __init__(self, settings: Settings, billing: Billing | None = None, client: PaddleClient | None = None):
        self.settings = settings.paddle
        self.tolerance = settings.webhook_tolerance_seconds
        self.livemode = settings.paddle.environment == "production"
        self.client = client
        if client is None and settings.paddle.api_key:
            try:
                self.client = PaddleClient(
                    api_key=settings.paddle.api_key,
                    environment=settings.paddle.environment,
                    api_base=settings.paddle.api_base,
                )
            except ConfigurationNeeded:
                self.client = None  # config.py reported the malformed variable; doctor names it
        self._billing: Billing | None = billing
        if billing is None and self.client is not None:
            self._billing = PaddleBilling(
                self.client, links=settings.links, client_token=settings.paddle.client_token, livemode=self.livemode
            )

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    @property
    def billing(self) -> Billing | None:
        return self._billing

    def missing_for_intake(self) -> list[str]:
        """The secret, and the API key: translating an event reads the customer's email from the API."""
        missing = [] if self.settings.webhook_secrets else ["PADDLE_WEBHOOK_SECRET"]
        return missing + ([] if self.client is not None else ["PADDLE_API_KEY"])

    def missing_for_sending(self) -> list[str]:
        missing = [] if self._billing is not None else ["PADDLE_API_KEY"]
        return missing + ([] if self.settings.client_token else ["PADDLE_CLIENT_TOKEN"])

    def receive(self, headers: Mapping[str, str], body: bytes) -> IncomingEvent:
        """Check `Paddle-Signature` with every PADDLE_WEBHOOK_SECRET, then read the envelope."""
        webhook.verify_signature(body, headers.get(webhook.HEADER), self.settings.webhook_secrets, self.tolerance)
        envelope = webhook.parse_envelope(body)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:  # JSON may be UTF-16; Paddle sends UTF-8, and the inbox stores text
            raise WebhookRejected("body is not UTF-8") from None
        return IncomingEvent(
            event_id=envelope["event_id"],  # notification_id differs per destination and replay
            type=envelope["event_type"],
            occurred_at=envelope["occurred_at"].astimezone(UTC).replace(tzinfo=None),
            livemode=self.livemode,  # a notification destination belongs to one environment
            payload=text,
        )

    def translate(self, event: StoredEvent) -> list[DomainEvent] | None:
        if event.type not in translate.TRANSLATORS:
            return None
        if self.client is None:
            raise ConfigurationNeeded("PADDLE_API_KEY is not set: Paddle events need the API for customer emails")
        return translate.translate(event, translate.Source(reads=self.client, livemode=self.livemode))

    def dashboard_url(self, kind: str, object_id: str, livemode: bool) -> str | None:
        """The transaction or customer in Paddle's dashboard (sandbox-vendors for sandbox rows)."""
        path = DASHBOARD_PATHS.get(kind)
        if path is None:
            return None
        return f"{DASHBOARDS['production' if livemode else 'sandbox']}/{path}/{object_id}"

    def doctor(self, svc: Services) -> list[Check]:
        from webhook_app.providers.paddle.doctor import checks

        return checks(svc, self)

    def register_commands(self, cli: click.Group) -> None:
        """No Paddle-specific commands: `campaign --provider paddle` and `doctor` cover it."""

    def blueprints(self) -> list[Blueprint]:
        from webhook_app.providers.paddle.pages import bp

        return [bp]


def build(settings: Settings, billing: Billing | None = None) -> PaddleProvider:
    """The Paddle provider from its settings group (`billing` replaces the runtime port in tests)."""
    return PaddleProvider(settings, billing=billing)
