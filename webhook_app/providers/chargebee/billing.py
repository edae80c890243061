"""Chargebee's runtime port (`webhook_app.providers.base.Billing`) over `ChargebeeClient`.

- `retrieve_invoice`: the invoice and its customer (email, name, country), as an InvoiceView.
- `update_link`: a hosted page minted now: `collect_now` when the customer has invoices due (they pay
  them and may change card on the way), else `manage_payment_sources`. Both expire five days after
  creation (https://apidocs.chargebee.com/docs/api/hosted_pages, `expires_at`), so the email
  carries our durable /r/ link and the page is minted when the customer clicks it.
- `list_unpaid_invoices`: every invoice still owed (payment_due, not_paid), each customer read once.

Calls share the client's token bucket (test sites allow 150 API calls a minute), which is why no page is
minted for an email that carries our /r/ link anyway.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

from webhook_app import payload
from webhook_app.adapters.ratelimit import TokenBucket
from webhook_app.domain import InvoiceView
from webhook_app.errors import PermanentError
from webhook_app.providers.base import LinkTarget, UpdateLink
from webhook_app.providers.chargebee.client import ChargebeeClient
from webhook_app.providers.chargebee.translate import invoice_view

# Transient failures (a 429 with a short Retry-After, a 5xx) are absorbed in place when the wait is
# short, so one throttled call does not send a whole message or listing back to the worker's backoff.
LIST_RETRIES = 5  # a throttled read of a long listing is made again, not the whole listing
READ_RETRIES, READ_MAX_WAIT = 3, 30.0  # a worker thread re-reading an invoice before a send
CLICK_RETRIES, CLICK_MAX_WAIT = 2, 5.0  # a customer is waiting on the other end of the click


class ChargebeeBilling:
    """The runtime port over the Chargebee API."""

    def __init__(
        self,
        client: ChargebeeClient,
        *,
        livemode: bool,
        return_url: str | None = None,
        durable_links: bool = True,
    ):
        """`durable_links`: PUBLIC_URL is set, so emails carry /r/ links and get no hosted page of their own."""
        self.client = client
        self.livemode = livemode
        self.return_url = return_url
        self.durable_links = durable_links

    @property
    def bucket(self) -> TokenBucket:
        """The client's rate limiter (the campaign reports the 429s it absorbed)."""
        return self.client.bucket

    def retrieve_invoice(self, invoice_id: str) -> InvoiceView:
        """The invoice as Chargebee sees it now; its customer too while it is still owed."""
        client = self.client
        invoice = client.retrying(
            lambda: client.retrieve_invoice(invoice_id), retries=READ_RETRIES, max_wait=READ_MAX_WAIT
        )
        view = invoice_view(invoice, None, livemode=self.livemode)
        if view.is_closed:
            return view  # nothing will be sent for it: the customer's details are not needed
        customer = client.retrying(
            lambda: client.retrieve_customer(view.customer_id), retries=READ_RETRIES, max_wait=READ_MAX_WAIT
        )
        return invoice_view(invoice, customer, livemode=self.livemode)

    def update_link(
        self, target: LinkTarget, *, idempotency_key: str | None = None, for_email: bool = False
    ) -> UpdateLink | None:
        """A hosted page minted now: collect_now when invoices are due, else manage_payment_sources.

        For an email (`for_email`) there is none when PUBLIC_URL is set: the message carries our /r/
        link, which mints the page on click. Without PUBLIC_URL the emailed page itself is the link
        (it works for five days).
        """
        if for_email and self.durable_links:
            return None
        client, customer_id, redirect_url = self.client, target.customer_id, self.return_url
        due = client.retrying(
            lambda: next(iter(client.list_unpaid_invoices(customer_id, page_size=1)), None),
            retries=CLICK_RETRIES,
            max_wait=CLICK_MAX_WAIT,
        )
        # Chargebee refused the POST (429, 5xx) or it timed out: asking again costs at worst an unused
        # page, which expires by itself; with the notification's key Chargebee returns the same page.
        if due is not None:
            page = client.retrying(
                lambda: client.collect_now_page(customer_id, redirect_url, idempotency_key=idempotency_key),
                retries=CLICK_RETRIES,
                max_wait=CLICK_MAX_WAIT,
            )
        else:
            page = client.retrying(
                lambda: client.manage_payment_sources_page(customer_id, redirect_url, idempotency_key=idempotency_key),
                retries=CLICK_RETRIES,
                max_wait=CLICK_MAX_WAIT,
            )
        url = payload.text(page.get("url"), "hosted_page.url")
        if not url or not url.startswith(("https://", "http://")):
            raise PermanentError("Chargebee returned a hosted page without a URL")
        return UpdateLink(url=url, reference=payload.text(page.get("id"), "hosted_page.id"))

    def list_unpaid_invoices(self, *, customer_id: str | None = None) -> Iterator[InvoiceView]:
        """Every invoice Chargebee is still owed (all pages, oldest first), optionally of one customer."""
        customers: dict[str, dict[str, Any]] = {}
        for invoice in self.client.list_unpaid_invoices(customer_id, page_retries=LIST_RETRIES):
            owner = payload.ident(invoice.get("customer_id"), "invoice.customer_id")
            if owner not in customers:  # one read per customer, however many invoices they owe
                customers[owner] = self.client.retrying(
                    partial(self.client.retrieve_customer, owner),
                    retries=LIST_RETRIES,
                )
            yield invoice_view(invoice, customers[owner], livemode=self.livemode)
