"""Paddle Billing API (v1) for recovery: read transactions, customers and subscriptions, and get the
transaction a customer completes in a Paddle.js checkout to update their payment method.

API pages this wraps (base https://api.paddle.com, sandbox https://sandbox-api.paddle.com, or `api_base`):
- Get a transaction, `GET /transactions/{id}?include=customer`:
  https://developer.paddle.com/api-reference/transactions/get-transaction
- List transactions, `GET /transactions?status=past_due&customer_id=…` (cursor `after`, `meta.pagination`):
  https://developer.paddle.com/api-reference/transactions/list-transactions
- Get a customer: https://developer.paddle.com/api-reference/customers/get-customer
- Get a subscription: https://developer.paddle.com/api-reference/subscriptions/get-subscription
- Get a transaction to update payment method, `GET /subscriptions/{id}/update-payment-method-transaction`
  (past_due: the latest past_due transaction; active: a new zero-amount one; automatic collection only):
  https://developer.paddle.com/api-reference/subscriptions/update-payment-method
- Errors `{"error": {type, code, detail, documentation_url}}`: https://developer.paddle.com/errors/overview
- Rate limits, 240 requests a minute per IP, 429 with Retry-After:
  https://developer.paddle.com/api-reference/about/rate-limiting
- Permissions the API key needs (the spec's `x-permissions`): transaction.read, customer.read,
  subscription.read, address.read (the customer's country, for quiet hours; Paddle leaves an included
  entity out when the key may not read it), and transaction.write for the update-payment-method
  transaction (it may create one).
  Keys look like `pdl_live_apikey_…` / `pdl_sdbx_apikey_…` (legacy keys: 50 random characters).

Why plain `requests` (through `webhook_app.adapters.http.call`) and not paddle-python-sdk 1.16.1, whose
source was read for this: it can be pointed at a stand-in (`Options(environment=<obj with base_url>)`),
but for these read calls it gets in the way more than it helps:
- its default session mounts urllib3 `Retry(total=3, backoff_factor=1, status_forcelist=[429, 5xx])` on
  https://, so a 429 sleeps inside the call for Paddle's Retry-After, blocking a worker thread and hiding
  the limit from the TokenBucket every thread shares;
- `ApiError.__init__` does `int(response.headers["Retry-After"])`: an HTTP-date Retry-After raises
  ValueError from inside its error path; an error body without `documentation_url` raises KeyError; a
  non-JSON error (a proxy's 502 page) surfaces as a bare HTTPError;
- it returns typed entities (`Transaction.from_dict` needs `collection_mode`, `details`, `origin`... or
  raises KeyError), while the translator wants the API's own JSON as a plain dict;
- the client keeps per-request state on itself (`payload`, `status_code`, each resource's `response`,
  the session's `X-Transaction-ID` header), which the worker's threads would share.
The stand-in's responses are still checked against the SDK's entity parsers in the tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from webhook_app.adapters import http
from webhook_app.adapters.ratelimit import TokenBucket, parse_retry_after
from webhook_app.errors import ConfigurationNeeded, PermanentError, ResourceMissing
from webhook_app.observability import scrub

BASE_URLS = {"production": "https://api.paddle.com", "sandbox": "https://sandbox-api.paddle.com"}
API_VERSION = "1"  # the `Paddle-Version` header
RATE_PER_MINUTE = 240  # per IP, all endpoints but pricing-preview
DEFAULT_RETRY_AFTER = 60.0  # Paddle meters per minute; used when a 429 carries no readable Retry-After
PAGE_SIZE = 30  # GET /transactions takes `per_page_transaction_query`: default 30, maximum 30 (not 200)
MAX_PAGES = 10_000  # a cursor that never ends is a bug at Paddle's or ours: stop rather than spin
_DETAIL_MAX = 300


class PaddleClient:
    """Paddle Billing reads for the recovery flow; every method returns the API's JSON `data` as dicts.

    Errors are classified: 429 -> TransientError with retry_after (the shared bucket pauses), 5xx, 408,
    timeouts and connection failures -> TransientError, 401/403 -> ConfigurationNeeded naming
    PADDLE_API_KEY, 404 -> ResourceMissing(kind=...), other 4xx -> PermanentError with Paddle's `detail`.
    No message carries the API key or a customer email.
    """

    name = "paddle"

    def __init__(
        self,
        *,
        api_key: str,
        environment: str = "production",
        api_base: str | None = None,
        timeout: float = 10.0,
        rate_per_minute: float = RATE_PER_MINUTE,
        session: requests.Session | None = None,
        bucket: TokenBucket | None = None,
    ) -> None:
        if not api_key:
            raise ConfigurationNeeded("PADDLE_API_KEY is not set, so Paddle cannot be read")
        if environment not in BASE_URLS:
            raise ConfigurationNeeded(f"PADDLE_ENVIRONMENT must be 'sandbox' or 'production', not {environment!r}")
        base = api_base or BASE_URLS[environment]
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigurationNeeded("PADDLE_API_BASE must be an http(s) URL such as https://sandbox-api.paddle.com")
        self._api_key = api_key
        self.environment = environment
        self.base_url = base.rstrip("/")
        self._timeout = timeout
        self._session = session if session is not None else requests.Session()
        # Paddle counts requests per minute; a burst of 4 keeps a worker pool from spending it in one go.
        self.bucket = bucket if bucket is not None else TokenBucket(rate_per_minute / 60.0, burst=4)

    # -- reads ---------------------------------------------------------------------------------------

    def get_transaction(
        self, txn_id: str, include_customer: bool = False, include_address: bool = False
    ) -> dict[str, Any]:
        """The transaction `txn_id`; with `include_customer` its `customer` (with the email) is embedded,
        with `include_address` its billing `address` (with `country_code`): one request for all three."""
        params = _includes(include_customer, include_address)
        return self._data(self._get(f"/transactions/{_segment(txn_id)}", "transaction lookup", "transaction", params))

    def get_customer(self, ctm_id: str) -> dict[str, Any]:
        """The customer `ctm_id` (id, email, name, locale, status)."""
        return self._data(self._get(f"/customers/{_segment(ctm_id)}", "customer lookup", "customer"))

    def get_subscription(self, sub_id: str) -> dict[str, Any]:
        """The subscription `sub_id` (status, collection_mode, next_billed_at, management_urls, items...)."""
        return self._data(self._get(f"/subscriptions/{_segment(sub_id)}", "subscription lookup", "subscription"))

    def update_payment_method_transaction(self, sub_id: str) -> dict[str, Any]:
        """The transaction to open in Paddle.js (`Checkout.open({transactionId})`) so the customer updates
        their card: the latest past_due transaction of a past_due subscription (completing it collects the
        balance), or a new zero-amount one for an active subscription. Fetch it at click time.
        """
        path = f"/subscriptions/{_segment(sub_id)}/update-payment-method-transaction"
        return self._data(self._get(path, "update-payment-method transaction", "subscription"))

    def list_past_due_transactions(
        self,
        customer_id: str | None = None,
        *,
        subscription_id: str | None = None,
        include_customer: bool = False,
        include_address: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Every `past_due` transaction (of one customer and/or subscription when given), following
        `meta.pagination.next`; `include_*` embed each one's customer and address as `get_transaction` does."""
        params: dict[str, str] = {"status": "past_due", "per_page": str(PAGE_SIZE)}
        if customer_id:
            params["customer_id"] = _segment(customer_id)
        if subscription_id:
            params["subscription_id"] = _segment(subscription_id)
        params.update(_includes(include_customer, include_address) or {})
        url: str | None = self.base_url + "/transactions"
        query: dict[str, str] | None = params
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            if url is None:
                return
            response = self._request("GET", url, "past-due transactions list", params=query)
            if not response.ok:
                raise self._error(response, "past-due transactions list", "customer" if customer_id else "transaction")
            payload = http.json_object(response)
            data = payload.get("data")
            if not isinstance(data, list):
                raise PermanentError("Paddle answered the past-due transactions list without a data list")
            yield from (item for item in data if isinstance(item, dict))
            pagination = (payload.get("meta") or {}).get("pagination") or {}
            next_url = pagination.get("next")
            if not pagination.get("has_more") or not data or not isinstance(next_url, str):
                return
            url = self._next_page(next_url)
            if url in seen:
                raise PermanentError("Paddle's pagination returned the same page twice; stopping the list")
            seen.add(url)
            query = None  # `next` already carries the original query plus `after`
        raise PermanentError(f"Paddle's past-due transactions list did not end after {MAX_PAGES} pages")

    def check_credentials(self) -> str:
        """Verify PADDLE_API_KEY with one transaction read (a permission the flow needs); say what was checked."""
        response = self._request("GET", self.base_url + "/transactions", "credentials check", params={"per_page": "1"})
        if not response.ok:
            raise self._error(response, "credentials check", "transaction")
        return f"Paddle {self.environment} API key accepted ({self.base_url})"

    # -- HTTP ----------------------------------------------------------------------------------------

    def _next_page(self, next_url: str) -> str:
        # `next` is absolute and points at Paddle's own host; follow only the configured base (a stand-in,
        # sandbox or live) so a crafted response can never send the API key elsewhere.
        absolute = urljoin(self.base_url + "/", next_url)
        if urlsplit(absolute).netloc != urlsplit(self.base_url).netloc:
            raise PermanentError("Paddle's pagination `next` URL points at another host; not following it")
        return absolute

    def _get(self, path: str, what: str, kind: str, params: dict[str, str] | None = None) -> requests.Response:
        """GET `path`; a refusal raises the classified error, naming `kind` when it is a 404."""
        response = self._request("GET", self.base_url + path, what, params=params)
        if not response.ok:
            raise self._error(response, what, kind)
        return response

    def _request(self, method: str, url: str, what: str, params: dict[str, str] | None = None) -> requests.Response:
        headers = {
            "Authorization": f"Bearer {self._api_key}",
            "Paddle-Version": API_VERSION,
            "Accept": "application/json",
        }
        response = http.call(
            self._session,
            self.bucket,
            "Paddle",
            method,
            url,
            what=what,
            timeout=self._timeout,
            headers=headers,
            params=params,
        )
        return response

    def _data(self, response: requests.Response) -> dict[str, Any]:
        data = http.json_object(response).get("data")
        if not isinstance(data, dict):
            raise PermanentError("Paddle answered without a `data` object")
        return data

    def _detail(self, response: requests.Response) -> tuple[str, str]:
        """Paddle's error `code` and `detail`, scrubbed of the API key and any email."""
        error = http.json_object(response).get("error")
        code = detail = ""
        if isinstance(error, dict):
            code = str(error.get("code") or "")
            detail = str(error.get("detail") or "")
        detail = detail or response.reason or "no details"
        clean = scrub(detail, (self._api_key,))[:_DETAIL_MAX]
        return scrub(code, (self._api_key,))[:60], clean

    def _error(self, response: requests.Response, what: str, kind: str) -> Exception:
        code, detail = self._detail(response)
        shown = f"{code}: {detail}" if code else detail
        refused = http.refusal(
            response,
            self.bucket,
            "Paddle",
            what=what,
            detail=shown,
            rate_limit_wait=lambda: _retry_after(response),
            credentials="PADDLE_API_KEY",
            credentials_hint=", or it lacks the permission for this read" if response.status_code == 403 else "",
        )
        if refused is not None:
            return refused
        if response.status_code == 404 or code == "not_found":
            return ResourceMissing(f"Paddle has no such {kind} ({shown})", kind=kind)
        if code == "paddle_billing_not_enabled":
            return ConfigurationNeeded(f"PADDLE_API_KEY belongs to an account without Paddle Billing ({shown})")
        return PermanentError(f"Paddle rejected the {what} with HTTP {response.status_code} ({shown})")


def _includes(customer: bool, address: bool) -> dict[str, str] | None:
    """The `include` query parameter: related entities Paddle embeds in the answer (a comma-separated list)."""
    names = [name for name, wanted in (("customer", customer), ("address", address)) if wanted]
    return {"include": ",".join(names)} if names else None


def _retry_after(response: requests.Response) -> float:
    wait = parse_retry_after(response.headers.get("Retry-After"))
    return DEFAULT_RETRY_AFTER if wait is None else wait


def _segment(entity_id: str) -> str:
    """An id that is safe to put in a URL path: Paddle ids are `prefix_` + lowercase base32."""
    if not isinstance(entity_id, str) or not entity_id or len(entity_id) > 100:
        raise PermanentError("a Paddle id must be a non-empty string")
    if not all(c.isascii() and (c.isalnum() or c == "_") for c in entity_id):
        raise PermanentError("a Paddle id may hold only letters, digits and underscores")
    return entity_id
