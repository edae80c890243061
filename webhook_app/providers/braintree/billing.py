"""Braintree's runtime port (`webhook_app.providers.base.Billing`): re-read an episode, mint our update page.

The "invoice" is a subscription's failure episode (`episodes.py`: `<subscription>:<first failed
transaction>`), read back from `subscription.find`. Braintree has no hosted page for a customer to update
their card, so the update link is our own `/pay/braintree/<token>` page (`pages.py`), signed by
`tokens.page_url` and minted when the customer clicks the durable `/r/<token>` link: it is never put in an
email itself (its token is short-lived).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from webhook_app import tokens
from webhook_app.config import LinkSettings
from webhook_app.domain import InvoiceView
from webhook_app.errors import ResourceMissing
from webhook_app.providers.base import LinkTarget, UpdateLink
from webhook_app.providers.braintree import episodes, translate
from webhook_app.providers.braintree.client import BraintreeClient

log = logging.getLogger(__name__)

PAGE = "braintree"  # /pay/braintree/<token>


class BraintreeBilling:
    """The runtime port over Braintree."""

    def __init__(self, client: BraintreeClient, links: LinkSettings, *, livemode: bool):
        self.client = client
        self.links = links
        self.livemode = livemode

    def retrieve_invoice(self, invoice_id: str) -> InvoiceView:
        """The episode as Braintree lists it now: open (Past Due), paid (a charge ended the run), canceled."""
        subscription_id, first_failure = episodes.split(invoice_id)
        subscription = self.client.find_subscription(subscription_id)
        episode = episodes.find(subscription, first_failure)
        if episode is None:
            raise ResourceMissing(
                "Braintree no longer lists the failed charge that opened this case on its subscription", kind="invoice"
            )
        return translate.invoice_view(subscription, episode, livemode=self.livemode)

    def update_link(
        self, target: LinkTarget, *, idempotency_key: str | None = None, for_email: bool = False
    ) -> UpdateLink | None:
        """Our update page for the case, minted at click time; None for an email (only /r/ links go there)."""
        if for_email:
            return None
        return UpdateLink(url=tokens.page_url(self.links, PAGE, target.case_id))

    def list_unpaid_invoices(self, *, customer_id: str | None = None) -> Iterator[InvoiceView]:
        """The current episode of every Past Due subscription (optionally of one customer), with its customer."""
        customers: dict[str, dict[str, Any]] = {}
        for subscription in self.client.list_past_due_subscriptions():
            episode = episodes.latest(subscription)
            owner = subscription.get("customer_id")
            if episode is None or episode.payment is not None or not owner:
                continue
            if customer_id is not None and owner != customer_id:
                continue
            if owner not in customers:
                try:
                    customers[owner] = self.client.find_customer(owner)
                except ResourceMissing:
                    log.warning("a past-due Braintree subscription's customer no longer exists: listed without email")
                    customers[owner] = {}
            yield translate.invoice_view(subscription, episode, customer=customers[owner], livemode=self.livemode)
