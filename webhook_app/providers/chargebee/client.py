"""A thin Chargebee API v2 client: the few calls payment recovery needs, failures classified.

Why not the official SDK (chargebee 3.x): it is built on httpx, so requests-mock (which every adapter
test here uses) cannot intercept it, and it reaches an http:// stand-in only after flipping the
class-level `Chargebee.verify_ca_certs` flag, process-wide state that a test would leak into every
other client. The calls below are a handful of GETs and two form POSTs; going through the shared
`webhook_app.adapters.http.call` gives them the same token bucket, timeouts and error classification
as the email-tool adapters.

API pages wrapped (base `https://{site}.chargebee.com/api/v2`; a test site is the site named
`{site}-test`, so `site="acme-test"`; `base_url` replaces the whole base, e.g. for a stand-in):
- Events, `GET /events/{id}`: https://apidocs.chargebee.com/docs/api/events
- Invoices, `GET /invoices/{id}` and `GET /invoices` (filters `status[in]`, `customer_id[is]`, paging
  with `limit` <= 100 and `offset` = the previous page's `next_offset`):
  https://apidocs.chargebee.com/docs/api/invoices/list-invoices, https://apidocs.chargebee.com/docs/api/list-ops
- Customers, `GET /customers/{id}`: https://apidocs.chargebee.com/docs/api/customers
- Subscriptions, `GET /subscriptions/{id}`: https://apidocs.chargebee.com/docs/api/subscriptions
- Hosted pages, `POST /hosted_pages/collect_now` and `POST /hosted_pages/manage_payment_sources`
  (form-encoded `customer[id]`, `redirect_url`, ...): https://apidocs.chargebee.com/docs/api/hosted_pages
- Site configuration, `GET /configurations` (the credentials check): https://apidocs.chargebee.com/docs/api/configurations
- Errors `{message, type, api_error_code, param, error_code, error_msg, http_status_code}` (the 400, 401,
  404, 429 and 5xx schemas of github.com/chargebee/openapi); rate limits (test sites 150 calls a minute,
  then every request is refused "until the limit resets (in approximately a minute)"):
  https://www.chargebee.com/docs/billing/2.0/kb/platform/what-are-the-chargebee-api-limits

Amounts in Chargebee objects are integers in the currency's minor unit (`amount_due`, `total`).
Nothing raised here carries the API key or a customer's email: error texts are scrubbed first.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import quote

import requests

from webhook_app.adapters import http
from webhook_app.adapters.ratelimit import TokenBucket, parse_retry_after
from webhook_app.errors import BadPayload, ConfigurationNeeded, PermanentError, ResourceMissing, TransientError
from webhook_app.observability import scrub

PROVIDER = "Chargebee"
DEFAULT_RATE_PER_SECOND = 150 / 60  # test sites: 150 API calls a minute (live Starter sites too)
DEFAULT_TIMEOUT = 10.0
DEFAULT_RATE_LIMIT_WAIT = 60.0  # no Retry-After documented; the per-minute window resets in about a minute
PAGE_LIMIT = 100  # the maximum `limit` of a list call
RETRY_WAIT_MAX = 120.0  # longest wait `retrying` sleeps in place by default (a listing page asked for again)
# Sent with the hosted-page POSTs, which Chargebee marks idempotent: a retry with the same key within
# Chargebee's idempotency window gets the page already made (https://apidocs.chargebee.com/docs/api/idempotency).
IDEMPOTENCY_HEADER = "chargebee-idempotency-key"
IDEMPOTENCY_KEY_MAX = 100  # "Idempotency keys can be up to 100 characters in length"
# Invoices Chargebee has not been paid for: `payment_due` (still being retried) and `not_paid` (every
# attempt failed, the invoice is still open). `posted` (not yet due), `paid`, `voided` and `pending`
# (not yet closed) are not recoveries to chase.
UNPAID_STATUSES = ("payment_due", "not_paid")
T = TypeVar("T")
_SITE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}")
_DETAIL_MAX = 300


class ChargebeeRefused(PermanentError):
    """Chargebee refused a request for good (a 4xx other than 401/403/404/408/429).

    `status` and `api_error_code` (e.g. "invalid_request", "payment_processing_failed") let a caller
    tell a bad request from a declined payment without parsing the message.
    """

    def __init__(self, message: str, status: int, api_error_code: str | None):
        super().__init__(message)
        self.status = status
        self.api_error_code = api_error_code


class ChargebeeClient:
    """Chargebee API v2 over `requests`; every call first takes a token from `bucket`."""

    def __init__(
        self,
        *,
        api_key: str,
        site: str | None = None,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        rate_per_second: float = DEFAULT_RATE_PER_SECOND,
        session: requests.Session | None = None,
        bucket: TokenBucket | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not api_key:
            raise ConfigurationNeeded("CHARGEBEE_API_KEY is not set, so Chargebee cannot be called")
        if base_url:
            self._base = base_url.rstrip("/")
        elif site and _SITE.fullmatch(site):
            self._base = f"https://{site}.chargebee.com/api/v2"
        elif site:
            raise ConfigurationNeeded("CHARGEBEE_SITE must be the site name only, e.g. 'acme' or 'acme-test'")
        else:
            raise ConfigurationNeeded(
                "CHARGEBEE_SITE (or CHARGEBEE_API_BASE) is not set, so Chargebee cannot be called"
            )
        self._api_key = api_key
        self._timeout = timeout
        self._session = session if session is not None else requests.Session()
        self.bucket = bucket if bucket is not None else TokenBucket(rate_per_second)
        self._sleep = sleep

    @property
    def base_url(self) -> str:
        """The API base every path is appended to."""
        return self._base

    # -- business calls ------------------------------------------------------------------------------

    def retrieve_event(self, event_id: str) -> dict[str, Any]:
        """The Event resource (`{id, event_type, occurred_at, content, ...}`) for `event_id`."""
        return self._get_one("events", event_id, "event")

    def retrieve_invoice(self, invoice_id: str) -> dict[str, Any]:
        """The Invoice resource: `status`, `amount_due` (minor units), `currency_code`, `dunning_status`, ..."""
        return self._get_one("invoices", invoice_id, "invoice")

    def retrieve_customer(self, customer_id: str) -> dict[str, Any]:
        """The Customer resource (`email`, `first_name`, `last_name`, `company`, ...)."""
        return self._get_one("customers", customer_id, "customer")

    def retrieve_subscription(self, subscription_id: str) -> dict[str, Any]:
        """The Subscription resource (`status`, `customer_id`, `due_invoices_count`, ...)."""
        return self._get_one("subscriptions", subscription_id, "subscription")

    def list_unpaid_invoices(
        self, customer_id: str | None = None, *, page_size: int = PAGE_LIMIT, page_retries: int = 0
    ) -> Iterator[dict[str, Any]]:
        """Every invoice still unpaid (status payment_due or not_paid), oldest first, across all pages.

        Pages are fetched lazily, each through the bucket; `customer_id` narrows it to one customer.
        `page_retries`: how often a page that failed transiently (a 429, a 5xx, a timeout) is asked for
        again before the error is raised, so a long listing (the campaign) survives a throttled page
        without starting over. The wait is Chargebee's (the bucket is paused on a 429 too) or a backoff.
        """
        if not 1 <= page_size <= PAGE_LIMIT:
            raise ValueError(f"page_size must be between 1 and {PAGE_LIMIT}")
        params: dict[str, str | int] = {
            "limit": page_size,
            # `in` takes a bracketed list. chargebee-python sends `str(list)` (`['a', 'b']`); a JSON
            # array is the unambiguous spelling of the same thing. The stand-in accepts both.
            "status[in]": json.dumps(list(UNPAID_STATUSES), separators=(",", ":")),
            "sort_by[asc]": "date",
        }
        what = "unpaid invoice listing"
        if customer_id is not None:
            params["customer_id[is]"] = _required(customer_id, "customer id")
            what = self._what(f"unpaid invoice listing for customer {customer_id}")
        seen_offsets: set[str] = set()
        while True:
            payload = self.retrying(
                lambda: self._request("GET", "/invoices", what=what, kind="invoice", params=params),
                retries=page_retries,
            )
            entries = payload.get("list")
            if not isinstance(entries, list):
                raise PermanentError(f"Chargebee answered the {what} without a `list`")
            for entry in entries:
                invoice = entry.get("invoice") if isinstance(entry, dict) else None
                if isinstance(invoice, dict):
                    yield invoice
            next_offset = payload.get("next_offset")
            if not next_offset:
                return
            if not isinstance(next_offset, str) or next_offset in seen_offsets:
                # A repeated offset would page forever (and spend the whole rate limit doing it).
                raise PermanentError(f"Chargebee returned a repeated or malformed next_offset on the {what}")
            seen_offsets.add(next_offset)
            params["offset"] = next_offset

    def collect_now_page(
        self,
        customer_id: str,
        redirect_url: str | None = None,
        currency_code: str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """A fresh "collect now" hosted page: the customer pays their unpaid invoices (and may change card).

        Returns the hosted_page (`id`, `type`, `url`, `state`, `expires_at`, ...). Mint it when the
        customer clicks: a hosted page expires, so an emailed one can be dead when opened.
        `idempotency_key`: a retry with the same key gets the same page instead of a second one.
        """
        form = {"customer[id]": _required(customer_id, "customer id")}
        if redirect_url:
            form["redirect_url"] = redirect_url
        if currency_code:
            form["currency_code"] = currency_code
        what = self._what(f"collect-now hosted page for customer {customer_id}")
        return self._hosted_page("/hosted_pages/collect_now", form, what, idempotency_key)

    def manage_payment_sources_page(
        self, customer_id: str, redirect_url: str | None = None, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """A fresh "manage payment sources" hosted page (add or replace the card); returns the hosted_page."""
        form = {"customer[id]": _required(customer_id, "customer id")}
        if redirect_url:
            form["redirect_url"] = redirect_url
        what = self._what(f"manage-payment-sources hosted page for customer {customer_id}")
        return self._hosted_page("/hosted_pages/manage_payment_sources", form, what, idempotency_key)

    def check_credentials(self) -> str:
        """Verify the key with a cheap authenticated GET (`/configurations`); return a short description."""
        payload = self._request("GET", "/configurations", what="credentials check", kind="site")
        configurations = payload.get("configurations")
        first = configurations[0] if isinstance(configurations, list) and configurations else {}
        domain = first.get("domain") if isinstance(first, dict) else None
        catalog = first.get("product_catalog_version") if isinstance(first, dict) else None
        site = domain if isinstance(domain, str) and domain else "(unnamed site)"
        suffix = f", product catalog {catalog}" if isinstance(catalog, str) and catalog else ""
        return f"Chargebee site {site}: API key accepted{suffix}"

    # -- HTTP ----------------------------------------------------------------------------------------

    def _get_one(self, collection: str, object_id: str, kind: str) -> dict[str, Any]:
        object_id = _required(object_id, f"{kind} id")
        what = self._what(f"{kind} {object_id} retrieval")
        payload = self._request("GET", f"/{collection}/{quote(object_id, safe='')}", what=what, kind=kind)
        return _member(payload, kind, what)

    def _hosted_page(self, path: str, form: dict[str, str], what: str, idempotency_key: str | None) -> dict[str, Any]:
        headers = None
        if idempotency_key is not None:
            if not 0 < len(idempotency_key) <= IDEMPOTENCY_KEY_MAX or not idempotency_key.isascii():
                raise ValueError(f"an idempotency key is 1 to {IDEMPOTENCY_KEY_MAX} ASCII characters")
            headers = {IDEMPOTENCY_HEADER: idempotency_key}
        # The customer is what a hosted page is for: a 404 here means that customer is unknown.
        payload = self._request("POST", path, what=what, kind="customer", data=form, headers=headers)
        return _member(payload, "hosted_page", what)

    def retrying(self, request: Callable[[], T], *, retries: int, max_wait: float = RETRY_WAIT_MAX) -> T:
        """`request()`, made again up to `retries` times while it fails transiently and the wait is short.

        The wait is Chargebee's (after a 429 the bucket is paused for the same time, so sleeping it
        here costs nothing extra) or an exponential backoff; a failure asking for more than `max_wait`
        seconds is raised at once, for the caller's own, longer backoff (the worker's).
        Safe for reads, and for POSTs that carry an idempotency key or whose repetition is harmless.
        """
        attempt = 0
        while True:
            try:
                return request()
            except TransientError as exc:
                attempt += 1
                delay = exc.retry_after if exc.retry_after is not None else 2.0 ** (attempt - 1)
                if attempt > retries or delay > max_wait:
                    raise
                self._sleep(delay)

    def _what(self, text: str) -> str:
        # Ids are arbitrary merchant text (a customer id can be an email address): scrub before use.
        return scrub(text, (self._api_key,))

    def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        kind: str,
        params: dict[str, str | int] | None = None,
        data: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        response = http.call(
            self._session,
            self.bucket,
            PROVIDER,
            method,
            self._base + path,
            what=what,
            timeout=self._timeout,
            auth=(self._api_key, ""),  # HTTP basic auth, the API key as username, empty password
            headers={"Accept": "application/json", **(headers or {})},
            params=params,
            data=data,
        )
        if not 200 <= response.status_code < 300:
            raise self._error(response, what, kind)
        return http.json_object(response)

    def _error(self, response: requests.Response, what: str, kind: str) -> Exception:
        status = response.status_code
        payload = http.json_object(response)
        code = payload.get("api_error_code")
        code = code if isinstance(code, str) and code.isprintable() else None
        message = payload.get("message") or payload.get("error_msg") or response.reason or "no details"
        text = f"{code}: {message}" if code else str(message)
        detail = scrub(text, (self._api_key,))[:_DETAIL_MAX]
        refused = http.refusal(
            response,
            self.bucket,
            PROVIDER,
            what=what,
            detail=detail,
            rate_limit_wait=lambda: _rate_limit_wait(response),
            credentials="CHARGEBEE_API_KEY",
        )
        if refused is not None:
            return refused
        if status == 404 and code == "site_not_found":
            return ConfigurationNeeded(
                f"Chargebee does not know this site (404 site_not_found) on the {what}: "
                "check CHARGEBEE_SITE (test sites end in -test) or CHARGEBEE_API_BASE"
            )
        if status == 404:
            return ResourceMissing(f"Chargebee has no such {kind} (404) on the {what}: {detail}", kind=kind)
        return ChargebeeRefused(f"Chargebee refused the {what} with HTTP {status}: {detail}", status, code)


def _rate_limit_wait(response: requests.Response) -> float:
    wait = parse_retry_after(response.headers.get("Retry-After"))
    return DEFAULT_RATE_LIMIT_WAIT if wait is None else wait


def _member(payload: dict[str, Any], key: str, what: str) -> dict[str, Any]:
    value = payload.get(key)
    if not isinstance(value, dict):
        raise PermanentError(f"Chargebee answered the {what} without a `{key}` object")
    return value


def _required(value: str, name: str) -> str:
    # An empty id would turn `/invoices/{id}` into the list endpoint: refuse it as a bad payload.
    if not isinstance(value, str) or not value.strip():
        raise BadPayload(f"a Chargebee {name} is required")
    return value
