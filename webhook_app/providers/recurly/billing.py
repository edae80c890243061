"""Recurly's runtime port (`Billing`) and the reads translation makes, over `RecurlyClient`.

- `retrieve_invoice(number)`: the invoice now (`GET /invoices/number-<n>`) as an InvoiceView.
- `update_link(target)`: at click time, the account is read again (`GET /accounts/code-<code>`) and its
  hosted billing-info page built from the `hosted_login_token` it has *now* (a token Recurly revoked
  and replaced is never used). `for_email=True` answers None: the token is a standing login to the
  customer's account, so it only ever travels behind our durable `/r/<token>` link, never in an email.
- `list_unpaid_invoices`: every past-due invoice, all pages (`GET /invoices?state=past_due`).

Livemode: Recurly objects carry no mode; a site is production, sandbox or development. The key's site
(`GET /sites`) is read once per process: production sites' rows are live, the others test.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any

from webhook_app.domain import InvoiceView
from webhook_app.errors import BadPayload, ConfigurationNeeded
from webhook_app.providers.base import LinkTarget, UpdateLink
from webhook_app.providers.recurly.client import RecurlyClient
from webhook_app.providers.recurly.translate import invoice_view

LIVE_MODES = frozenset({"production"})


def invoice_ref(number: str) -> str:
    """The API's path id for an invoice number (`number-1001`)."""
    return f"number-{number}"


def account_ref(code: str) -> str:
    """The API's path id for an account code (`code-ada`)."""
    return f"code-{code}"


class RecurlyBilling:
    """The runtime port over one Recurly site; also what `translate` reads through (`RecurlyReads`)."""

    def __init__(self, client: RecurlyClient, subdomain: str | None) -> None:
        self.client = client
        self.subdomain = subdomain
        self._livemode: bool | None = None
        self._lock = threading.Lock()

    # -- reads for translation (translate.RecurlyReads) -------------------------------------------

    def invoice(self, number: str) -> Mapping[str, Any]:
        """The invoice with this number, as Recurly has it now."""
        return self.client.get_invoice(invoice_ref(number))

    def livemode(self) -> bool:
        """Whether the key's site is a production site (read once, then remembered)."""
        with self._lock:
            if self._livemode is None:
                mode = self.client.current_site().get("mode")
                if not isinstance(mode, str):
                    raise BadPayload("Recurly did not say the site's mode (GET /sites)")
                self._livemode = mode in LIVE_MODES
            return self._livemode

    def past_due_invoices(self, account_code: str) -> Iterator[Mapping[str, Any]]:
        """The account's past-due invoices, every page."""
        return self.client.list_past_due_invoices(account_id=account_ref(account_code))

    def collect(self, number: str) -> Mapping[str, Any]:
        """Force a collection attempt on the invoice now (RecurlyRefused when declined)."""
        return self.client.collect_invoice(invoice_ref(number))

    # -- the Billing port --------------------------------------------------------------------------

    def retrieve_invoice(self, invoice_id: str) -> InvoiceView:
        """The invoice (our id is its number) as Recurly sees it now."""
        return invoice_view(self.invoice(invoice_id), self.livemode())

    def update_link(
        self, target: LinkTarget, *, idempotency_key: str | None = None, for_email: bool = False
    ) -> UpdateLink | None:
        """The hosted billing-info page of the case's account, from its login token as it is now.

        Nothing is created at Recurly, so there is nothing for `idempotency_key` to deduplicate.
        """
        if for_email:
            return None  # the page's URL is a login: only our /r/ link carries it, at click time
        if not self.subdomain:
            raise ConfigurationNeeded("RECURLY_SUBDOMAIN is not set, so Recurly's hosted pages cannot be linked")
        account = self.client.get_account(account_ref(target.customer_id))
        token = account.get("hosted_login_token")
        url = self.client.billing_info_url(self.subdomain, token if isinstance(token, str) else "")
        reference = account.get("id") if isinstance(account.get("id"), str) else None
        return UpdateLink(url=url, reference=reference)

    def list_unpaid_invoices(self, *, customer_id: str | None = None) -> Iterator[InvoiceView]:
        """Every past-due invoice of the site (or of one account), across all pages."""
        livemode = self.livemode()
        account = account_ref(customer_id) if customer_id else None
        for obj in self.client.list_past_due_invoices(account_id=account):
            yield invoice_view(obj, livemode)
