"""The runtime port (`webhook_app.providers.base.Billing`) over `PaddleClient`.

Paddle has no hosted "update your card" page to link to: a checkout opened with Paddle.js on a
transaction does it (https://developer.paddle.com/build/subscriptions/update-payment-details). So a
click on our durable `/r/<token>` link asks Paddle for the subscription's update-payment-method
transaction *then* (for a past_due subscription: its latest past_due transaction, which the checkout
collects) and sends the customer to our own page `/pay/paddle/<token>`, which opens the checkout on it.
An email never carries a Paddle URL: without PUBLIC_URL there is nothing to put in one.
"""

from __future__ import annotations

from collections.abc import Iterator

from webhook_app import payload, tokens
from webhook_app.config import LinkSettings
from webhook_app.domain import InvoiceView
from webhook_app.errors import ConfigurationNeeded
from webhook_app.providers.base import LinkTarget, UpdateLink
from webhook_app.providers.paddle.client import PaddleClient
from webhook_app.providers.paddle.translate import PROVIDER, invoice_view, is_dunning_charge


class PaddleBilling:
    """Paddle transactions as the core's invoices, and our update page minted at click time."""

    def __init__(self, client: PaddleClient, *, links: LinkSettings, client_token: str | None, livemode: bool):
        self.client = client
        self.links = links
        self.client_token = client_token
        self.livemode = livemode

    def retrieve_invoice(self, invoice_id: str) -> InvoiceView:
        """The transaction now, with its customer (email, name) and address (country) in one request."""
        txn = self.client.get_transaction(invoice_id, include_customer=True, include_address=True)
        return invoice_view(txn, livemode=self.livemode)

    def update_link(
        self, target: LinkTarget, *, idempotency_key: str | None = None, for_email: bool = False
    ) -> UpdateLink | None:
        """Our update page for the transaction Paddle wants the customer to complete, fetched now.

        `for_email`: None, since no Paddle URL belongs in an email (messages carry our /r/ link and the
        page is made when it is clicked); a missing PADDLE_CLIENT_TOKEN holds the message instead, as the
        page could not open the checkout. `idempotency_key` is unused: the request is a GET.
        """
        if not self.client_token:
            raise ConfigurationNeeded("PADDLE_CLIENT_TOKEN is not set: the update page cannot open Paddle's checkout")
        if for_email:
            return None
        if target.subscription_id:
            txn = self.client.update_payment_method_transaction(target.subscription_id)
        else:  # not a subscription's charge: the checkout collects the transaction itself
            txn = self.client.get_transaction(target.invoice_id)
        txn_id = payload.ident(txn.get("id"), "transaction.id")
        return UpdateLink(url=tokens.page_url(self.links, PROVIDER, target.case_id, txn_id), reference=txn_id)

    def list_unpaid_invoices(self, *, customer_id: str | None = None) -> Iterator[InvoiceView]:
        """Every past_due transaction Paddle is collecting from a subscription (all pages), with emails."""
        transactions = self.client.list_past_due_transactions(customer_id, include_customer=True, include_address=True)
        for txn in transactions:
            if is_dunning_charge(txn):
                yield invoice_view(txn, livemode=self.livemode)
