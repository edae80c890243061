"""Recurly (API v2021-02-25): signed JSON webhooks, thin notifications read back through the API, and the
account's hosted billing-info page behind our durable link.

`RecurlyProvider` is what the core sees (`webhook_app.providers.base.Provider`): `webhook.py` verifies
deliveries, `translate.py` turns notifications into domain events (re-reading the invoice), `billing.py`
is the runtime port over `client.py`, and `doctor.py` holds the checks. Recurly has no operator
commands here and serves no pages of ours: customers update their card on Recurly's hosted page.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import quote

import click
from flask import Blueprint

from webhook_app.config import RecurlySettings, Settings
from webhook_app.domain import DomainEvent
from webhook_app.errors import ConfigurationNeeded, WebhookRejected
from webhook_app.payload import iso_time
from webhook_app.providers.base import Billing, IncomingEvent, StoredEvent
from webhook_app.providers.recurly import translate, webhook
from webhook_app.providers.recurly.billing import RecurlyBilling
from webhook_app.providers.recurly.client import RecurlyClient
from webhook_app.providers.recurly.translate import RecurlyReads

if TYPE_CHECKING:
    from webhook_app.ops.doctor import Check
    from webhook_app.services import Services

SIGNATURE_HEADER = "recurly-signature"  # looked up without regard to case: a plain dict may spell it either way


def build_billing(settings: RecurlySettings) -> RecurlyBilling | None:
    """The runtime port from RECURLY_API_KEY (None without it), pointed at RECURLY_API_BASE if set."""
    if not settings.api_key:
        return None
    client = RecurlyClient(api_key=settings.api_key, base_url=settings.api_base)
    return RecurlyBilling(client, settings.subdomain)


class RecurlyProvider:
    """Recurly as the core sees it."""

    name = "recurly"
    label = "Recurly"
    handled_event_types = translate.EVENT_TYPES

    def __init__(self, settings: Settings, billing: Billing | None = None):
        self.settings = settings.recurly
        self.tolerance = settings.webhook_tolerance_seconds
        built = build_billing(settings.recurly)
        self._billing: Billing | None = billing if billing is not None else built
        # Translation reads Recurly's API (thin notifications): through the given port when it can,
        # else through one built from the settings (a test's fake port only replaces sending).
        self.reads: RecurlyReads | None = billing if isinstance(billing, RecurlyBilling) else built

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    @property
    def billing(self) -> Billing | None:
        return self._billing

    def missing_for_intake(self) -> list[str]:
        return [] if self.settings.webhook_secrets else ["RECURLY_WEBHOOK_SECRET"]

    def missing_for_sending(self) -> list[str]:
        missing = [] if self._billing is not None else ["RECURLY_API_KEY"]
        return missing + ([] if self.settings.subdomain else ["RECURLY_SUBDOMAIN"])

    def receive(self, headers: Mapping[str, str], body: bytes) -> IncomingEvent:
        """Check `recurly-signature` with every RECURLY_WEBHOOK_SECRET (5 minutes' tolerance), then the envelope.

        Notifications carry no mode and intake makes no API call, so every event is stored as live;
        the cases and ledger rows it leads to take the site's mode (see `billing.RecurlyBilling`).
        """
        signature = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER), None)
        webhook.verify_signature(body, signature, self.settings.webhook_secrets, self.tolerance)
        envelope = webhook.parse_envelope(body)
        occurred_at = iso_time(envelope["event_time"], "event_time")
        if occurred_at is None:  # parse_envelope checked it is there
            raise WebhookRejected("notification field 'event_time' is missing")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise WebhookRejected("body is not UTF-8") from None
        return IncomingEvent(
            event_id=envelope["id"],
            type=f"{envelope['object_type']}.{envelope['event_type']}",
            occurred_at=occurred_at,
            livemode=True,
            payload=text,
        )

    def translate(self, event: StoredEvent) -> list[DomainEvent] | None:
        """Re-read the notification's invoice (or account) and say what it means now."""
        if event.type not in self.handled_event_types:
            return None
        if self.reads is None:
            raise ConfigurationNeeded("RECURLY_API_KEY is not set: Recurly notifications wait until it is")
        return translate.translate(event.payload, self.reads, collect_on_update=self.settings.collect_on_update)

    def dashboard_url(self, kind: str, object_id: str, livemode: bool) -> str | None:
        """The invoice (by number) or account (by code) in the site's admin, `https://{subdomain}.recurly.com/...`.

        Recurly's docs only show the admin's `app.recurly.com/go/...` shortcuts; these per-site paths
        are the ones integrations link to (UNCONFIRMED in Recurly's own documentation). A sandbox is a
        site of its own, so the mode changes nothing.
        """
        if not self.settings.subdomain:
            return None
        path = {"invoice": "invoices", "customer": "accounts"}.get(kind)
        if path is None:
            return None
        return f"https://{self.settings.subdomain}.recurly.com/{path}/{quote(object_id, safe='')}"

    def doctor(self, svc: Services) -> list[Check]:
        from webhook_app.providers.recurly.doctor import checks

        return checks(svc, self)

    def register_commands(self, cli: click.Group) -> None:
        """None: Recurly's webhook endpoint and hosted pages are set up in its admin (see the README)."""

    def blueprints(self) -> list[Blueprint]:
        return []  # customers update their billing info on Recurly's hosted page


def build(settings: Settings, billing: Billing | None = None) -> RecurlyProvider:
    """The Recurly provider from its settings group (`billing` replaces the runtime port in tests)."""
    return RecurlyProvider(settings, billing=billing)
