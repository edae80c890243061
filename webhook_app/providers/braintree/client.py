"""Braintree, through the official SDK (`braintree` 4.48.0): our own Drop-in update page and the retry.

Braintree has no hosted update page, so the recovery flow is ours (https://developer.paypal.com/braintree/
docs/guides/drop-in/overview/python): a client token for the customer at click time (valid up to 24 h),
Drop-in in the browser returns a nonce, we vault it as the default card with verification
(`payment_method.create`), move the subscription onto it (`subscription.update`) and, while it is Past
Due, charge the balance once (`subscription.retry_charge`, which POSTs /transactions with the
subscription id). Reference pages:
- https://developer.paypal.com/braintree/docs/reference/request/client-token/generate/python
- https://developer.paypal.com/braintree/docs/reference/request/payment-method/create/python
- https://developer.paypal.com/braintree/docs/reference/request/subscription/update/python
- https://developer.paypal.com/braintree/docs/reference/request/subscription/retry-charge/python
- https://developer.paypal.com/braintree/docs/reference/request/subscription/search/python
- https://developer.paypal.com/braintree/docs/reference/general/exceptions/python

The SDK speaks Braintree's XML gateway, so it stays; we plug our own transport into it
(`Configuration(http_strategy=...)`, a documented hook whose `http_do` the SDK calls for every request)
so each request takes a token from this client's TokenBucket and goes through
`webhook_app.adapters.http.call` and `refusal`: timeouts and connection errors, 429 (with any
Retry-After), 5xx, 401/403 are classified before the SDK sees the response. The SDK's own mapping would
lose the Retry-After (`TooManyRequestsError` carries nothing) and, unless `wrap_http_exceptions` is set,
let raw `requests` exceptions through. 404 and 422 still reach the SDK, which turns them into
`NotFoundError` (we name the missing kind) and `ErrorResult` (validation errors, declines).
Braintree publishes no rate limit (it answers 429 when throttled): we default to 5 requests a second.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

import braintree
import requests
from braintree.exceptions import (
    AuthenticationError,
    AuthorizationError,
    GatewayTimeoutError,
    NotFoundError,
    RequestTimeoutError,
    ServerError,
    ServiceUnavailableError,
    TooManyRequestsError,
    UpgradeRequiredError,
)
from braintree.exceptions.braintree_error import BraintreeError
from braintree.util.http import Http

from webhook_app.adapters import http
from webhook_app.adapters.ratelimit import TokenBucket, parse_retry_after
from webhook_app.errors import (
    ConfigurationNeeded,
    PermanentError,
    ResourceMissing,
    TransientError,
)
from webhook_app.observability import scrub
from webhook_app.providers.braintree import webhook
from webhook_app.providers.braintree.objects import _text, customer_dict, subscription_dict, transaction_dict

DEFAULT_RATE_PER_SECOND = 5.0  # Braintree publishes none; conservative for a shared merchant account
DEFAULT_RETRY_AFTER = 10.0  # used when a 429 carries no Retry-After
PAST_DUE = braintree.Subscription.Status.PastDue  # "Past Due"
CREDENTIALS = "BRAINTREE_MERCHANT_ID / BRAINTREE_PUBLIC_KEY / BRAINTREE_PRIVATE_KEY"
_ENVIRONMENTS = {"sandbox": braintree.Environment.Sandbox, "production": braintree.Environment.Production}
_WHAT: contextvars.ContextVar[str] = contextvars.ContextVar("braintree_what", default="request")
_DETAIL_MAX = 300
T = TypeVar("T")

# Customer-facing words for a declined card. Braintree's processor texts ("Do Not Honor") are for us,
# not for the customer; these say what to do next without exposing the bank's reason codes.
# https://developer.paypal.com/braintree/docs/reference/general/processor-responses/authorization-responses
_DECLINE_MESSAGES = {
    "2001": "Your bank declined this card for insufficient funds. Please use another card.",
    "2004": "This card has expired. Please check the expiry date or use another card.",
    "2005": "The card number looks wrong. Please check it and try again.",
    "2006": "The expiry date looks wrong. Please check it and try again.",
    "2010": "The security code (CVV) was not accepted. Please check it and try again.",
    "2014": "Your bank suspects fraud on this card. Please contact your bank or use another card.",
    "2038": "Your bank declined this card. Please contact your bank or use another card.",
}
_DEFAULT_DECLINE = "Your bank declined this card. Please use another card or contact your bank."
_GATEWAY_REJECTED = {
    "cvv": "The security code (CVV) was not accepted. Please check it and try again.",
    "avs": "The billing address did not match the card. Please check it and try again.",
    "avs_and_cvv": "The security code and billing address did not match the card. Please check them.",
    "fraud": "We could not accept this card. Please use another card.",
    "risk_threshold": "We could not accept this card. Please use another card.",
}
_NONCE_PROBLEM = "Your card details expired before they reached us. Please enter them again."


def decline_message(code: str | None, rejection_reason: str | None = None) -> str:
    """A message safe to show the customer for a declined verification or charge."""
    if rejection_reason:
        return _GATEWAY_REJECTED.get(rejection_reason, "We could not accept this card. Please use another card.")
    return _DECLINE_MESSAGES.get(code or "", _DEFAULT_DECLINE)


def _environment(environment: str, api_base: str | None) -> braintree.Environment:
    """Braintree's sandbox or production gateway, or an `api_base` override (a stand-in in tests)."""
    if not api_base:
        if environment not in _ENVIRONMENTS:
            raise ConfigurationNeeded(f"BRAINTREE_ENVIRONMENT must be 'sandbox' or 'production', not {environment!r}")
        return _ENVIRONMENTS[environment]
    parts = urlsplit(api_base)
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host or parts.path.strip("/"):
        raise ConfigurationNeeded("BRAINTREE_API_BASE must be a scheme, host and port, e.g. http://127.0.0.1:8765")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    # The SDK speaks TLS exactly when the port is "443" (braintree/environment.py `protocol`).
    if (parts.scheme == "https") != (port == 443):
        raise ConfigurationNeeded("BRAINTREE_API_BASE: the Braintree SDK uses https on port 443 and http on any other")
    # ssl_certificate True: verify against the system CA store (None would turn verification off).
    return braintree.Environment(
        "custom", host, str(port), f"{parts.scheme}://{host}:{port}", parts.scheme == "https", True
    )


class _Transport(Http):  # type: ignore[misc]  # braintree ships no type hints
    """The SDK's transport with our rate limit, timeout and error classification (see module docstring)."""

    def __init__(
        self,
        config: braintree.Configuration,
        environment: braintree.Environment,
        *,
        session: requests.Session,
        bucket: TokenBucket,
        timeout: float,
        secrets: tuple[str, ...],
    ) -> None:
        super().__init__(config, environment)
        self._session = session
        self._bucket = bucket
        self._timeout = timeout
        self._secrets = secrets

    def http_do(self, http_verb: str, path: str, headers: dict[str, Any], request_body: Any) -> list[Any]:
        """Send one request; return [status, text] for the SDK, or raise our classified error."""
        what = _WHAT.get()
        certificate = self.environment.ssl_certificate
        response = http.call(
            self._session,
            self._bucket,
            "Braintree",
            http_verb,
            path,
            what=what,
            timeout=self._timeout,
            headers=headers,
            data=request_body,
            verify=certificate if isinstance(certificate, str) else True,
        )
        status = response.status_code
        if status in (200, 201, 204, 404, 422):
            return [status, response.text]
        detail = scrub(response.reason or f"HTTP {status}", self._secrets)[:_DETAIL_MAX]
        refused = http.refusal(
            response,
            self._bucket,
            "Braintree",
            what=what,
            detail=detail,
            rate_limit_wait=lambda: _retry_after(response),
            credentials=CREDENTIALS,
            credentials_hint=" (403: the API key lacks the permission)" if status == 403 else "",
        )
        if refused is not None:
            raise refused
        # 426 (SDK too old) and any other status: the SDK's own mapping raises; `_call` classifies it.
        return [status, response.text]


def _retry_after(response: requests.Response) -> float:
    wait = parse_retry_after(response.headers.get("Retry-After"))
    return DEFAULT_RETRY_AFTER if wait is None else wait


class BraintreeClient:
    """Braintree calls for the recovery flow; methods return plain dicts, never SDK objects.

    Errors are classified: 429 -> TransientError with retry_after (the bucket pauses), 5xx, 408,
    timeouts and connection failures -> TransientError, 401/403 -> ConfigurationNeeded naming the
    BRAINTREE_* variables, 404 -> ResourceMissing(kind=...), validation errors -> PermanentError with
    Braintree's message. A declined card is not an error: `add_payment_method` and `retry_charge` return
    `ok: False` with a message. No message carries a key or a customer email.
    """

    name = "braintree"

    def __init__(
        self,
        *,
        merchant_id: str,
        public_key: str,
        private_key: str,
        environment: str = "production",
        api_base: str | None = None,
        timeout: float = 20.0,
        rate_per_second: float = DEFAULT_RATE_PER_SECOND,
        session: requests.Session | None = None,
        bucket: TokenBucket | None = None,
    ) -> None:
        missing = [
            name
            for name, value in (
                ("BRAINTREE_MERCHANT_ID", merchant_id),
                ("BRAINTREE_PUBLIC_KEY", public_key),
                ("BRAINTREE_PRIVATE_KEY", private_key),
            )
            if not value
        ]
        if missing:
            raise ConfigurationNeeded(f"{', '.join(missing)} not set, so Braintree cannot be used")
        self.environment = environment
        self.merchant_id = merchant_id
        self._secrets = (private_key, public_key)
        self.bucket = bucket if bucket is not None else TokenBucket(rate_per_second, burst=max(1.0, rate_per_second))
        transport = functools.partial(
            _Transport,
            session=session if session is not None else requests.Session(),
            bucket=self.bucket,
            timeout=timeout,
            secrets=self._secrets,
        )
        self.gateway = braintree.BraintreeGateway(
            braintree.Configuration(
                environment=_environment(environment, api_base),
                merchant_id=merchant_id,
                public_key=public_key,
                private_key=private_key,
                http_strategy=transport,
                timeout=timeout,
            )
        )

    # -- webhooks ------------------------------------------------------------------------------------

    def parse_webhook(self, bt_signature: str | None, bt_payload: str | None) -> dict[str, Any]:
        """Verify and read a webhook with this client's keys (see `webhook.parse_notification`): kind,
        timestamp, the subject subscription as a dict, and the dedupe `event_id`. Raises WebhookRejected.
        """
        return webhook.parse_notification([self.gateway], bt_signature, bt_payload)

    # -- reads ---------------------------------------------------------------------------------------

    def find_subscription(self, sub_id: str) -> dict[str, Any]:
        """The subscription: status, balance, failure_count, next_billing_date, transactions (newest first)."""
        found = self._call("subscription lookup", "subscription", lambda: self.gateway.subscription.find(sub_id))
        return subscription_dict(found)

    def find_customer(self, customer_id: str) -> dict[str, Any]:
        """The customer: id, email, names, company, the addresses' countries, the default card token."""
        found = self._call("customer lookup", "customer", lambda: self.gateway.customer.find(customer_id))
        return customer_dict(found)

    def list_past_due_subscriptions(self) -> Iterator[dict[str, Any]]:
        """Every Past Due subscription (`subscription.search` by status; the SDK pages by id batches)."""
        search = braintree.SubscriptionSearch.status.in_list([PAST_DUE])
        results = self._call(
            "past-due subscription search", "subscription", lambda: self.gateway.subscription.search(search)
        )
        iterator = iter(results.items)
        while True:
            item = self._call("past-due subscription page", "subscription", lambda: next(iterator, None))
            if item is None:
                return
            yield subscription_dict(item)

    def check_credentials(self) -> str:
        """Verify the keys with a client token (no customer, nothing stored); say what was checked."""
        self._call("credentials check", "merchant", lambda: self.gateway.client_token.generate({}))
        return f"Braintree {self.environment} keys accepted for merchant {self.merchant_id}"

    # -- the update page -----------------------------------------------------------------------------

    def client_token(self, customer_id: str) -> str:
        """A Drop-in client token for the customer (valid up to 24 h: mint it when the page is opened)."""
        params = {"customer_id": customer_id}
        return str(self._call("client token", "customer", lambda: self.gateway.client_token.generate(params)))

    def add_payment_method(self, customer_id: str, nonce: str) -> dict[str, Any]:
        """Vault the Drop-in nonce as the customer's default card, verifying it first.

        Returns {ok: True, token, card_type, last_4} or, for a declined or unusable card,
        {ok: False, message, code, processor_response_code, processor_response_text}; `message` is
        safe to show the customer. Other refusals raise.
        """
        params = {
            "customer_id": customer_id,
            "payment_method_nonce": nonce,
            "options": {"make_default": True, "verify_card": True},
        }
        result = self._call("payment method create", "customer", lambda: self.gateway.payment_method.create(params))
        if result.is_success:
            method = result.payment_method
            return {
                "ok": True,
                "token": method.token,
                "card_type": getattr(method, "card_type", None),
                "last_4": getattr(method, "last_4", None),
            }
        verification = getattr(result, "credit_card_verification", None)
        if verification is not None:
            code = _text(getattr(verification, "processor_response_code", None))
            reason = _text(getattr(verification, "gateway_rejection_reason", None))
            return {
                "ok": False,
                "message": decline_message(code, reason),
                "code": reason or getattr(verification, "status", None) or "declined",
                "processor_response_code": code,
                "processor_response_text": _text(getattr(verification, "processor_response_text", None)),
            }
        errors = {e.code: e for e in result.errors.deep_errors}
        if errors.keys() & {"93105", "91705", "91510"}:
            raise ResourceMissing("Braintree has no such customer (payment method create)", kind="customer")
        if errors.keys() & {"93107", "93108", "91731", "91732", "91925", "93504", "93505"}:
            # Unknown, expired or already used nonce: the customer can simply enter the card again.
            return {
                "ok": False,
                "message": _NONCE_PROBLEM,
                "code": "nonce",
                "processor_response_code": None,
                "processor_response_text": None,
            }
        raise self._validation("payment method create", result)

    def move_subscription_to(self, sub_id: str, payment_method_token: str) -> dict[str, Any]:
        """Bill the subscription to `payment_method_token` from now on; returns the updated subscription."""
        params = {"payment_method_token": payment_method_token}
        result = self._call(
            "subscription update", "subscription", lambda: self.gateway.subscription.update(sub_id, params)
        )
        if not result.is_success:
            raise self._validation("subscription update", result)
        return subscription_dict(result.subscription)

    def retry_charge(self, sub_id: str) -> dict[str, Any]:
        """Charge a Past Due subscription's balance once (submitted for settlement).

        Refuses (PermanentError) when the subscription is not Past Due, without charging. Returns
        {ok, transaction_id, status, amount, currency, processor_response_code, message}: a declined
        charge is `ok: False`, not an exception. Not idempotent at Braintree: callers record the
        attempt before retrying a TransientError (a timed-out POST may have charged).
        """
        subscription = self.find_subscription(sub_id)
        if subscription["status"] != PAST_DUE:
            raise PermanentError(
                f"Braintree subscription is {subscription['status']}, not Past Due: no charge to retry"
            )
        result = self._call(
            "retry charge",
            "subscription",
            lambda: self.gateway.subscription.retry_charge(sub_id, amount=None, submit_for_settlement=True),
        )
        transaction = getattr(result, "transaction", None)
        if transaction is None:
            raise self._validation("retry charge", result)
        txn = transaction_dict(transaction)
        ok = bool(result.is_success)
        return {
            "ok": ok,
            "transaction_id": txn["id"],
            "status": txn["status"],
            "amount": txn["amount"],
            "currency": txn["currency_iso_code"],
            "processor_response_code": txn["processor_response_code"],
            "processor_response_text": txn["processor_response_text"],
            "message": None if ok else decline_message(txn["processor_response_code"]),
        }

    # -- errors --------------------------------------------------------------------------------------

    def _call(self, what: str, kind: str, fn: Callable[[], T]) -> T:
        """Run one SDK call with `what` naming its requests; SDK exceptions become our classified errors."""
        token = _WHAT.set(what)
        try:
            return fn()
        except (TransientError, ConfigurationNeeded, PermanentError):
            raise
        except NotFoundError:
            raise ResourceMissing(f"Braintree has no such {kind} ({what})", kind=kind) from None
        except TooManyRequestsError as exc:
            self.bucket.pause_for(DEFAULT_RETRY_AFTER)
            raise TransientError(f"Braintree rate limit on the {what}", retry_after=DEFAULT_RETRY_AFTER) from exc
        except (ServerError, ServiceUnavailableError, GatewayTimeoutError, RequestTimeoutError) as exc:
            raise TransientError(f"Braintree unavailable ({type(exc).__name__}) on the {what}") from None
        except (AuthenticationError, AuthorizationError):
            raise ConfigurationNeeded(f"Braintree rejected {CREDENTIALS} on the {what}") from None
        except UpgradeRequiredError:
            raise PermanentError(f"Braintree requires a newer SDK (426) for the {what}") from None
        except BraintreeError as exc:
            raise PermanentError(
                f"Braintree refused the {what} ({type(exc).__name__}: {scrub(str(exc), self._secrets)[:_DETAIL_MAX]})"
            ) from None
        except ValueError as exc:
            # client_token.generate raises ValueError carrying the api_error_response message.
            message = scrub(str(exc), self._secrets)[:_DETAIL_MAX]
            if "does not exist" in message:
                raise ResourceMissing(f"Braintree has no such {kind} ({what}: {message})", kind=kind) from None
            raise PermanentError(f"Braintree refused the {what}: {message}") from None
        finally:
            _WHAT.reset(token)

    def _validation(self, what: str, result: Any) -> PermanentError:
        codes = ", ".join(sorted({e.code for e in result.errors.deep_errors})) or "no code"
        message = scrub(str(getattr(result, "message", "") or ""), self._secrets)[:_DETAIL_MAX]
        if {e.code for e in result.errors.deep_errors} & {"91903"}:
            return ResourceMissing(f"Braintree refused the {what}: {message} ({codes})", kind="payment_method")
        return PermanentError(f"Braintree refused the {what}: {message} ({codes})")
