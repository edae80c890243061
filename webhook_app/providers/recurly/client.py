"""A thin Recurly API v2021-02-25 ("v3") client, the hosted billing-info link, and exact money conversion.

Why not the official SDK (recurly 4.x): it hard-codes its host (`http.client.HTTPSConnection(host, 443)`
with the host picked from a fixed region table), so it can reach a stand-in only by patching a private
attribute or module globals, and requests-mock cannot intercept `http.client`. The calls below go
through the shared `webhook_app.adapters.http.call`: the same token bucket, timeouts and error
classification as every other adapter.

API pages wrapped (base `https://v3.recurly.com`, EU sites `https://v3.eu.recurly.com`; `base_url`
replaces it whole; every request sends `Accept: application/vnd.recurly.v2021-02-25` and HTTP basic
auth with the private API key as username). Reference: https://recurly.com/developers/api/v2021-02-25/
(machine-readable: openapi/api.yaml in github.com/recurly/recurly-client-python):
- Fetch an invoice, `GET /invoices/{invoice_id}` (an id, or `number-1001`)
- Fetch an account, `GET /accounts/{account_id}` (an id, or `code-<account code>`)
- List invoices, `GET /invoices` and `GET /accounts/{account_id}/invoices` (`state`, `limit` <= 200,
  `order`, `sort`; follow `next` while `has_more`)
- Collect a pending or past-due invoice, `PUT /invoices/{invoice_id}/collect` ("Force a collection
  attempt using the stored billing information ... outside of Recurly's normal retry logic")
- List sites, `GET /sites` (the credentials check)
- Errors `{"error": {"type", "message", "params"}}`; rate limits: sandbox sites 400 requests a minute
  (every method), production 1,000 (GETs only), over a sliding 5-minute window; a 429 comes with
  `X-RateLimit-Reset` (Unix seconds at which the count resets).

Amounts (`total`, `balance`, `paid`, ...) are JSON decimal numbers in MAJOR units: `to_minor_units`
converts them exactly or refuses. Nothing raised here carries the API key or a customer's email.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from webhook_app.adapters import http
from webhook_app.adapters.ratelimit import TokenBucket, parse_retry_after
from webhook_app.errors import BadPayload, ConfigurationNeeded, PermanentError, ResourceMissing
from webhook_app.money import to_minor_units  # noqa: F401  (Recurly amounts are major units; re-exported)
from webhook_app.observability import scrub

PROVIDER = "Recurly"
API_VERSION = "v2021-02-25"
ACCEPT = f"application/vnd.recurly.{API_VERSION}"
DEFAULT_BASE_URL = "https://v3.recurly.com"
EU_BASE_URL = "https://v3.eu.recurly.com"
DEFAULT_RATE_PER_SECOND = 400 / 60  # sandbox sites: 400 requests a minute, every method counts
DEFAULT_TIMEOUT = 10.0
DEFAULT_RATE_LIMIT_WAIT = 60.0  # when a 429 carries neither Retry-After nor X-RateLimit-Reset
MAX_RATE_LIMIT_WAIT = 300.0  # the window is 5 minutes: never pause longer than one window
PAGE_LIMIT = 200  # the maximum `limit` of a list call
_SUBDOMAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}")
_CURRENCY = re.compile(r"[A-Za-z]{3}")
_MAX_MINOR_UNITS = 10**15  # beyond any invoice; keeps a hostile exponent from building a huge integer
_DETAIL_MAX = 300


class RecurlyRefused(PermanentError):
    """Recurly refused a request for good (a 4xx other than 401/403/404/408/429).

    `error_type` is Recurly's `error.type` ("validation", "transaction", ...). For a declined
    collection, `transaction_error` keeps the non-personal parts of Recurly's `transaction_error`
    (`code`, `decline_code`, `category`, `transaction_id`) for decline-aware messages.
    """

    def __init__(
        self, message: str, status: int, error_type: str | None, transaction_error: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.transaction_error = transaction_error or {}


class RecurlyClient:
    """Recurly API v2021-02-25 over `requests`; every call first takes a token from `bucket`.

    `hosted_base_url` replaces `https://{subdomain}.recurly.com` in `billing_info_url` (a stand-in's
    address in tests); the API base and the hosted pages are different hosts at Recurly.
    """

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        rate_per_second: float = DEFAULT_RATE_PER_SECOND,
        session: requests.Session | None = None,
        bucket: TokenBucket | None = None,
        hosted_base_url: str | None = None,
    ) -> None:
        if not api_key:
            raise ConfigurationNeeded("RECURLY_API_KEY is not set, so Recurly cannot be called")
        self._api_key = api_key
        self._base = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self._hosted_base = hosted_base_url.rstrip("/") if hosted_base_url else None
        self._timeout = timeout
        self._session = session if session is not None else requests.Session()
        self.bucket = bucket if bucket is not None else TokenBucket(rate_per_second)

    @property
    def base_url(self) -> str:
        """The API base every path is appended to."""
        return self._base

    # -- business calls ------------------------------------------------------------------------------

    def get_invoice(self, invoice_id: str) -> dict[str, Any]:
        """The Invoice: `state`, `total`/`balance`/`paid` (major units), `currency`, `account`, ..."""
        invoice_id = _required(invoice_id, "invoice id")
        what = self._what(f"invoice {invoice_id} retrieval")
        return _resource(self._request("GET", f"/invoices/{_segment(invoice_id)}", what=what, kind="invoice"), what)

    def get_account(self, account_id: str) -> dict[str, Any]:
        """The Account: `code`, `email`, names, `hosted_login_token`, `has_past_due_invoice`, ..."""
        account_id = _required(account_id, "account id")
        what = self._what(f"account {account_id} retrieval")
        return _resource(self._request("GET", f"/accounts/{_segment(account_id)}", what=what, kind="account"), what)

    def list_past_due_invoices(self, account_id: str | None = None) -> Iterator[dict[str, Any]]:
        """Every invoice in state past_due (the site's, or one account's), oldest first, across all pages."""
        if account_id is None:
            path, what, kind = "/invoices", "past-due invoice listing", "invoice"
        else:
            account_id = _required(account_id, "account id")
            path = f"/accounts/{_segment(account_id)}/invoices"
            what, kind = self._what(f"past-due invoice listing for account {account_id}"), "account"
        # created_at ascending: records created while we page land after the cursor, never behind it.
        params: dict[str, str | int] | None = {
            "state": "past_due",
            "limit": PAGE_LIMIT,
            "order": "asc",
            "sort": "created_at",
        }
        url = self._base + path
        seen_pages: set[str] = set()
        seen_ids: set[str] = set()
        while True:
            payload = self._send("GET", url, what=what, kind=kind, params=params)
            data = payload.get("data")
            if not isinstance(data, list):
                raise PermanentError(f"Recurly answered the {what} without a `data` list")
            for invoice in data:
                # A record updated while we page can show up twice; yield each invoice once.
                if isinstance(invoice, dict) and str(invoice.get("id")) not in seen_ids:
                    seen_ids.add(str(invoice.get("id")))
                    yield invoice
            next_link = payload.get("next")
            if payload.get("has_more") is not True or not next_link:
                return
            if not isinstance(next_link, str) or next_link in seen_pages:
                raise PermanentError(f"Recurly returned a repeated or malformed next link on the {what}")
            seen_pages.add(next_link)
            url, params = self._next_url(next_link, what), None  # the link carries every parameter

    def collect_invoice(self, invoice_id: str) -> dict[str, Any]:
        """Force a collection attempt on a pending or past-due invoice with the stored billing info.

        Returns the updated invoice. A decline or a closed invoice is a RecurlyRefused (422). A retry
        after a timeout is safe: collecting an invoice that the first attempt paid is refused, not
        charged twice.
        """
        invoice_id = _required(invoice_id, "invoice id")
        what = self._what(f"collection of invoice {invoice_id}")
        payload = self._request("PUT", f"/invoices/{_segment(invoice_id)}/collect", what=what, kind="invoice", json={})
        return _resource(payload, what)

    def current_site(self) -> dict[str, Any]:
        """The key's site (`GET /sites`, first entry): `subdomain`, `mode` (development, sandbox or
        production), ...; {} when the list is empty. A private API key belongs to one site."""
        payload = self._request("GET", "/sites", what="site lookup", kind="site", params={"limit": 1})
        data = payload.get("data")
        return data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}

    def check_credentials(self) -> str:
        """Verify the key with a cheap authenticated GET (`/sites`); return the site and its mode."""
        site = self.current_site()
        subdomain = site.get("subdomain") if isinstance(site.get("subdomain"), str) else "(unknown subdomain)"
        mode = site.get("mode") if isinstance(site.get("mode"), str) else "unknown mode"
        return f"Recurly site {subdomain} ({mode}): API key accepted"

    def billing_info_url(self, subdomain: str, hosted_login_token: str) -> str:
        """The hosted "update billing information" page that logs the account in with its token.

        `https://{subdomain}.recurly.com/account/billing_info/edit?ht={hosted_login_token}`, Recurly's
        "Guest View Edit Billing Info URL": documented with exactly this format in Recurly's own docs
        (github.com/recurly/recurly-docs, docs/HOSTED PAGES/hosted-account-management.md as created in
        commit a6cd046b, "Hosted billing information"; the Dec 2025 rewrite keeps the "Edit Billing
        Information URL" on each account's admin page without the format). It is chosen over the
        portal URL the OpenAPI Account schema gives (`/account/{hosted_login_token}`) because it works
        in both Hosted Account Management modes: the portal login needs "Account Login", while the
        default "Guest View Only" serves only invoices and this page (the email-template docs: with
        Guest View Only `account_hosted_maintenance_url` "returns the Guest View Edit Billing Info URL";
        with the feature disabled it is a 404). It also opens on the form, not on an account overview.

        The token is static (it does not expire and is not single-use), so the URL is built at click
        time from a freshly read token and never logged or emailed; Recurly can revoke a token that leaks.
        """
        if not (isinstance(subdomain, str) and _SUBDOMAIN.fullmatch(subdomain)):
            raise ConfigurationNeeded("RECURLY_SUBDOMAIN must be the site's subdomain only, e.g. 'acme'")
        if not (isinstance(hosted_login_token, str) and hosted_login_token.strip()):
            raise BadPayload("the Recurly account has no hosted_login_token")
        base = self._hosted_base or f"https://{subdomain}.recurly.com"
        return f"{base}/account/billing_info/edit?ht={quote(hosted_login_token.strip(), safe='')}"

    # -- HTTP ----------------------------------------------------------------------------------------

    def _what(self, text: str) -> str:
        # Ids are merchant text (an account code can be an email address): scrub before use.
        return scrub(text, (self._api_key,))

    def _next_url(self, link: str, what: str) -> str:
        """The absolute URL of a `next` link; only ever on the API's own host (the key goes with it)."""
        if link.startswith("/") and not link.startswith("//"):
            return self._base + link
        target, base = urlsplit(link), urlsplit(self._base)
        if (target.scheme, target.netloc) == (base.scheme, base.netloc):
            return link
        raise PermanentError(f"Recurly's next link on the {what} leaves the API host; not following it")

    def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        kind: str,
        params: dict[str, str | int] | None = None,
        json: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return self._send(method, self._base + path, what=what, kind=kind, params=params, json=json)

    def _send(
        self,
        method: str,
        url: str,
        *,
        what: str,
        kind: str,
        params: dict[str, str | int] | None = None,
        json: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        response = http.call(
            self._session,
            self.bucket,
            PROVIDER,
            method,
            url,
            what=what,
            timeout=self._timeout,
            auth=(self._api_key, ""),  # HTTP basic auth, the private API key as username
            headers={"Accept": ACCEPT},
            params=params,
            json=json,
        )
        if not 200 <= response.status_code < 300:
            raise self._error(response, what, kind)
        return http.json_object(response)

    def _error(self, response: requests.Response, what: str, kind: str) -> Exception:
        status = response.status_code
        error = http.json_object(response).get("error")
        error = error if isinstance(error, dict) else {}
        error_type = error.get("type") if isinstance(error.get("type"), str) else None
        message = error.get("message") or response.reason or "no details"
        text = f"{error_type}: {message}" if error_type else str(message)
        detail = scrub(text, (self._api_key,))[:_DETAIL_MAX]
        refused = http.refusal(
            response,
            self.bucket,
            PROVIDER,
            what=what,
            detail=detail,
            rate_limit_wait=lambda: rate_limit_wait(response),
            credentials="RECURLY_API_KEY",
        )
        if refused is not None:
            return refused
        if status == 404:
            return ResourceMissing(f"Recurly has no such {kind} (404) on the {what}: {detail}", kind=kind)
        if status == 406 or error_type in ("invalid_api_version", "unknown_api_version"):
            return PermanentError(f"Recurly refused API version {API_VERSION} on the {what}: {detail}")
        return RecurlyRefused(
            f"Recurly refused the {what} with HTTP {status}: {detail}",
            status,
            error_type,
            _transaction_error(error.get("transaction_error")),
        )


def rate_limit_wait(response: requests.Response, now: float | None = None) -> float:
    """Seconds to pause after a 429: Retry-After if given, else until X-RateLimit-Reset, else a minute."""
    retry_after = parse_retry_after(response.headers.get("Retry-After"), maximum=MAX_RATE_LIMIT_WAIT)
    if retry_after is not None:
        return retry_after
    reset = response.headers.get("X-RateLimit-Reset")
    if reset:
        try:
            until = float(reset.strip())
        except ValueError:
            until = math.nan
        if math.isfinite(until):
            wait = until - (time.time() if now is None else now)
            return min(max(wait, 0.0), MAX_RATE_LIMIT_WAIT)
    return DEFAULT_RATE_LIMIT_WAIT


def _resource(payload: dict[str, Any], what: str) -> dict[str, Any]:
    if not isinstance(payload.get("id"), str):
        raise PermanentError(f"Recurly answered the {what} without a resource")
    return payload


def _transaction_error(value: object) -> dict[str, str] | None:
    if not isinstance(value, dict):
        return None
    # Only codes and ids: `message` is worded for the customer and `merchant_advice` may quote details.
    keep = ("code", "decline_code", "category", "transaction_id")
    return {key: value[key] for key in keep if isinstance(value.get(key), str)}


def _segment(value: str) -> str:
    # A path segment, fully escaped: an id or code with `/`, `?` or `#` must not change the route.
    return quote(value, safe="")


def _required(value: str, name: str) -> str:
    # An empty id would turn `/invoices/{id}` into the list endpoint: refuse it as a bad payload.
    if not isinstance(value, str) or not value.strip():
        raise BadPayload(f"a Recurly {name} is required")
    return value
