"""Braintree: signed form webhooks, subscriptions' failure episodes as cases, and our own Drop-in update page.

`BraintreeProvider` is what the core sees (`webhook_app.providers.base.Provider`): `webhook.py` verifies
deliveries (the SDK's `webhook_notification.parse`), `translate.py` turns notifications into domain events,
`episodes.py` says which case a subscription's charges belong to, `billing.py` is the runtime port,
`client.py` the SDK client, `pages.py` and `charges.py` the update page, `doctor.py` its checks.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

import click
from flask import Blueprint

from webhook_app.config import Settings
from webhook_app.domain import DomainEvent
from webhook_app.errors import ConfigurationNeeded, WebhookRejected
from webhook_app.providers.base import Billing, IncomingEvent, StoredEvent
from webhook_app.providers.braintree import translate, webhook
from webhook_app.providers.braintree.billing import BraintreeBilling
from webhook_app.providers.braintree.client import BraintreeClient

if TYPE_CHECKING:
    from webhook_app.ops.doctor import Check
    from webhook_app.services import Services

log = logging.getLogger(__name__)

CONTROL_PANEL = {"production": "https://www.braintreegateway.com", "sandbox": "https://sandbox.braintreegateway.com"}
_MAX_FIELDS = 10  # a Braintree delivery has two


class BraintreeProvider:
    """Braintree as the core sees it."""

    name = "braintree"
    label = "Braintree"
    handled_event_types = translate.HANDLED_KINDS

    def __init__(self, settings: Settings, billing: Billing | None = None, client: BraintreeClient | None = None):
        self.settings = settings.braintree
        self.livemode = self.settings.environment == "production"
        self.problem: str | None = None
        self.client = client
        if self.client is None and self.settings.enabled:
            try:
                self.client = BraintreeClient(
                    merchant_id=self.settings.merchant_id or "",
                    public_key=self.settings.public_key or "",
                    private_key=self.settings.private_key or "",
                    environment=self.settings.environment,
                    api_base=self.settings.api_base,
                    # Our page makes several calls per request under gunicorn's 30 s timeout: fail fast.
                    timeout=self.settings.timeout_seconds,
                )
            except ConfigurationNeeded as exc:  # e.g. a malformed BRAINTREE_API_BASE: doctor and readiness say so
                self.problem = str(exc)
                log.error("Braintree is not usable: %s", exc)
        self._billing: Billing | None = billing
        if billing is None and self.client is not None:
            self._billing = BraintreeBilling(self.client, settings.links, livemode=self.livemode)

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    @property
    def billing(self) -> Billing | None:
        return self._billing

    def missing_for_intake(self) -> list[str]:
        """Braintree signs deliveries with the API key pair: both are needed to verify them."""
        return [
            name
            for name, value in (
                ("BRAINTREE_PUBLIC_KEY", self.settings.public_key),
                ("BRAINTREE_PRIVATE_KEY", self.settings.private_key),
            )
            if not value
        ]

    def missing_for_sending(self) -> list[str]:
        if self._billing is not None:
            return []
        if self.problem:
            return [self.problem]
        return [
            name
            for name, value in (
                ("BRAINTREE_MERCHANT_ID", self.settings.merchant_id),
                ("BRAINTREE_PUBLIC_KEY", self.settings.public_key),
                ("BRAINTREE_PRIVATE_KEY", self.settings.private_key),
            )
            if not value
        ]

    def receive(self, headers: Mapping[str, str], body: bytes) -> IncomingEvent:
        """Verify the `bt_signature` / `bt_payload` form with the SDK, and store the parsed notification.

        Braintree gives no event id: the dedupe id is kind, timestamp, subject and newest transaction
        (`webhook.dedupe_id`), the same on every resend.
        """
        try:
            text = body.decode("ascii")
            fields = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=_MAX_FIELDS)
        except (UnicodeDecodeError, ValueError):
            raise WebhookRejected("body is not a form of bt_signature and bt_payload") from None
        form = dict(fields)
        keys = [(self.settings.public_key or "", self.settings.private_key or "")]
        parsed = webhook.parse_form(form, keys)
        timestamp = parsed["timestamp"].astimezone(UTC)
        stored = {
            "kind": parsed["kind"],
            "timestamp": timestamp.isoformat(),
            "subject_type": parsed["subject_type"],
            "subject_id": parsed["subject_id"],
            "subscription": parsed["subscription"],
            "bt_payload": form["bt_payload"],  # as signed: everything the notification said, for audits
        }
        return IncomingEvent(
            event_id=parsed["event_id"],
            type=parsed["kind"],
            occurred_at=timestamp.replace(tzinfo=None),
            livemode=self.livemode,
            payload=json.dumps(stored),
        )

    def translate(self, event: StoredEvent) -> list[DomainEvent] | None:
        return translate.translate(event, self.client, livemode=self.livemode)

    def dashboard_url(self, kind: str, object_id: str, livemode: bool) -> str | None:
        """The Control Panel page of the case's subscription ("invoice") or of the customer."""
        merchant = self.settings.merchant_id
        if not merchant:
            return None
        base = f"{CONTROL_PANEL['production' if livemode else 'sandbox']}/merchants/{merchant}"
        if kind == "invoice":
            return f"{base}/subscriptions/{object_id.rpartition(':')[0] or object_id}"
        if kind == "customer":
            return f"{base}/customers/{object_id}"
        return None

    def doctor(self, svc: Services) -> list[Check]:
        from webhook_app.providers.braintree.doctor import checks

        return checks(svc, self)

    def register_commands(self, cli: click.Group) -> None:
        """Braintree needs no commands of its own: `campaign --provider braintree` and `doctor` cover it."""

    def blueprints(self) -> list[Blueprint]:
        from webhook_app.providers.braintree.pages import bp

        return [bp]  # /pay/braintree/<token>: Braintree has no hosted page to update a card


def build(settings: Settings, billing: Billing | None = None) -> BraintreeProvider:
    """The Braintree provider from its settings group (`billing` replaces the runtime port in tests)."""
    return BraintreeProvider(settings, billing=billing)
