"""Chargebee (API v2): basic-auth webhooks confirmed through the API, hosted pages minted on click.

`ChargebeeProvider` is what the core sees (`webhook_app.providers.base.Provider`): `webhook.py` checks a
delivery's basic auth and envelope, `translate.py` re-reads each event from the API and turns it into
domain events, `billing.py` is the runtime port over `client.py`, and `doctor.py` holds its checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import quote

import click
from flask import Blueprint

from webhook_app.config import Settings
from webhook_app.domain import DomainEvent
from webhook_app.errors import ConfigurationNeeded, WebhookRejected
from webhook_app.payload import unix_time
from webhook_app.providers.base import Billing, IncomingEvent, StoredEvent
from webhook_app.providers.chargebee import translate, webhook
from webhook_app.providers.chargebee.billing import ChargebeeBilling
from webhook_app.providers.chargebee.client import DEFAULT_RATE_PER_SECOND, ChargebeeClient

if TYPE_CHECKING:
    from webhook_app.ops.doctor import Check
    from webhook_app.services import Services

WEBHOOK_PATH = "/webhooks/chargebee"


class ChargebeeProvider:
    """Chargebee as the core sees it."""

    name = "chargebee"
    label = "Chargebee"
    handled_event_types = tuple(sorted(translate.TRANSLATORS))

    def __init__(self, settings: Settings, billing: Billing | None = None, client: ChargebeeClient | None = None):
        self.settings = settings.chargebee
        self.livemode = translate.is_live_site(self.settings.site)
        self.client = client
        if client is None and self.settings.enabled:
            try:
                self.client = ChargebeeClient(
                    api_key=self.settings.api_key or "",
                    site=self.settings.site,
                    base_url=self.settings.api_base,
                    rate_per_second=self.settings.rate_per_second or DEFAULT_RATE_PER_SECOND,
                )
            except ConfigurationNeeded:
                self.client = None  # a malformed CHARGEBEE_SITE: doctor and missing_for_sending name it
        self._billing: Billing | None = billing
        if billing is None and self.client is not None:
            self._billing = ChargebeeBilling(
                self.client,
                livemode=self.livemode,
                return_url=settings.links.return_url,
                durable_links=bool(settings.links.public_url),
            )

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    @property
    def billing(self) -> Billing | None:
        return self._billing

    def missing_for_intake(self) -> list[str]:
        return [
            name
            for name, value in (
                ("CHARGEBEE_WEBHOOK_USERNAME", self.settings.webhook_username),
                ("CHARGEBEE_WEBHOOK_PASSWORD", self.settings.webhook_password),
            )
            if not value
        ]

    def missing_for_sending(self) -> list[str]:
        if self._billing is not None:
            return []
        required = (("CHARGEBEE_SITE", self.settings.site), ("CHARGEBEE_API_KEY", self.settings.api_key))
        missing = [name for name, value in required if not value]
        # Both set but no client: the site is not a bare site name (config.py does not check its form).
        return missing or ["CHARGEBEE_SITE (the site name only, e.g. acme or acme-test)"]

    def receive(self, headers: Mapping[str, str], body: bytes) -> IncomingEvent:
        """Check the basic-auth credentials (constant time), then the envelope; the worker confirms the rest."""
        webhook.check_basic_auth(
            headers.get("Authorization"), self.settings.webhook_username or "", self.settings.webhook_password or ""
        )
        event = webhook.parse_envelope(body)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:  # json.loads also reads UTF-16/32; the inbox stores UTF-8 text
            raise WebhookRejected("body is not UTF-8") from None
        occurred_at = unix_time(event["occurred_at"], "occurred_at")
        if occurred_at is None:  # parse_envelope checked it is there
            raise WebhookRejected("event field 'occurred_at' is missing or not a Unix timestamp")
        return IncomingEvent(
            event_id=event["id"],
            type=event["event_type"],
            occurred_at=occurred_at,
            livemode=self.livemode,  # a Chargebee site is all test (`-test`) or all live
            api_version=event["api_version"],
            payload=text,
        )

    def translate(self, event: StoredEvent) -> list[DomainEvent] | None:
        """Re-read the event from Chargebee's API and translate that copy (basic auth alone proves little)."""
        if event.type not in translate.TRANSLATORS:
            return None
        if self.client is None:
            raise ConfigurationNeeded(
                f"{', '.join(self.missing_for_sending())} is not set: Chargebee events wait until they can be confirmed"
            )
        return translate.translate(self.client, event.event_id, event.type, livemode=self.livemode)

    def dashboard_url(self, kind: str, object_id: str, livemode: bool) -> str | None:
        """The object's page on the site's Chargebee app (`https://{site}.chargebee.com/d/invoices/{id}`)."""
        path = {"invoice": "invoices", "customer": "customers"}.get(kind)
        if path is None or not self.settings.site:
            return None
        return f"https://{self.settings.site}.chargebee.com/d/{path}/{quote(object_id, safe='')}"

    def doctor(self, svc: Services) -> list[Check]:
        from webhook_app.providers.chargebee.doctor import checks

        return checks(svc, self)

    def register_commands(self, cli: click.Group) -> None:
        """None: `campaign --provider chargebee`, `events replay` and `doctor` are the shared commands."""

    def blueprints(self) -> list[Blueprint]:
        return []  # customers pay and update cards on Chargebee's own hosted pages


def build(settings: Settings, billing: Billing | None = None) -> ChargebeeProvider:
    """The Chargebee provider from its settings group (`billing` replaces the runtime port in tests)."""
    return ChargebeeProvider(settings, billing=billing)
