"""A stand-in for Braintree's XML gateway (`/merchants/{merchant_id}/…`), enough for the `braintree` SDK.

Braintree publishes no REST/XML spec: the Python SDK (braintree 4.48.0) is the de-facto one. What it
sends and parses, and so what this answers:
- HTTP basic auth `public_key:private_key`, `Accept: application/xml`, XML bodies whose tags the SDK
  writes with underscores (`<payment_method_nonce>`) and reads with dashes or underscores alike;
  responses here use Braintree's dashed tags and `type="integer|boolean|date|datetime|array"`.
- 200/201 success, 422 `<api-error-response>` (validation errors, a declined verification or charge:
  the SDK returns `ErrorResult`, `is_success == False`), 401/403/404/429/500/503 raise in the SDK.
- POST client_token -> `<client-token><value>`; unknown customer -> 422 code 92804.
- POST payment_methods {customer_id, payment_method_nonce, options{make_default, verify_card}}:
  sandbox fake nonces (https://developer.paypal.com/braintree/docs/reference/general/testing/python):
  `fake-valid-nonce` (and -visa/-mastercard/-amex) verify; `fake-processor-declined-visa-nonce` fails
  verification (`processor_declined`, 2000 "Do Not Honor"); an unknown nonce is 93108, an unknown
  customer 93105.
- GET customers/{id}, GET subscriptions/{id}, PUT subscriptions/{id} {payment_method_token} (unknown
  token 91903; Past Due allows only non-price fields), PUT subscriptions/{id}/cancel.
- POST transactions {subscription_id, type: sale, amount?, options.submit_for_settlement}: the SDK's
  `subscription.retry_charge`. Unknown subscription 91528, not Past Due 91531. A charge on a declining
  card, or of a sandbox decline amount (2000.00-2999.99, the code is the amount), answers 422 with a
  `processor_declined` transaction; a successful one moves the subscription to
  Active with a zero balance and failure count. Every attempt is recorded in `charges`.
- POST subscriptions/advanced_search_ids and advanced_search: `subscription.search(status.in_list(...))`.
- A wrong merchant id answers 401 (UNCONFIRMED: what the real gateway does for an unknown merchant).

`sample_notification` builds a webhook with a real signature for the configured keys and a full
subscription (the SDK's `webhook_testing.sample_notification` has only an id and one bare transaction).
`/dropin.min.js` stubs https://js.braintreegateway.com/web/dropin/1.48.0/js/dropin.min.js for browser
tests: `braintree.dropin.create({authorization, container})` resolves to an instance whose
`requestPaymentMethod()` resolves `{nonce}` from the container's `data-test-nonce` or `window.__testNonce`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from xml.sax.saxutils import escape

from braintree.util.xml_util import XmlUtil
from flask import Flask, Response, request

from tests.standins import Faults

MERCHANT_ID = "standin_merchant"
PUBLIC_KEY = "standin_public_key"
PRIVATE_KEY = "standin_private_key_0123456789abcdef"

VALID_NONCES = {
    "fake-valid-nonce": ("Visa", "1111", "411111"),
    "fake-valid-visa-nonce": ("Visa", "1111", "411111"),
    "fake-valid-mastercard-nonce": ("MasterCard", "4444", "555555"),
    "fake-valid-amex-nonce": ("American Express", "0005", "378282"),
}
DECLINED_NONCES = {
    "fake-processor-declined-visa-nonce": ("Visa", "0002", "400011", "2000", "Do Not Honor"),
    "fake-processor-declined-mastercard-nonce": ("MasterCard", "5100", "510510", "2000", "Do Not Honor"),
}

PROCESSOR_TEXTS = {"2000": "Do Not Honor", "2001": "Insufficient Funds", "2004": "Expired Card"}


def sandbox_decline(amount: Decimal) -> str | None:
    """The processor code Braintree's sandbox declines a sale of `amount` with: 2000.00-2999.99 decline
    with the whole amount as the code (https://developer.paypal.com/braintree/docs/reference/general/
    testing/python#test-amounts), whatever the card."""
    return str(int(amount)) if Decimal("2000") <= amount < Decimal("3000") else None


DROPIN_JS = """(function () {
  var calls = (window.__dropinCalls = window.__dropinCalls || []);
  function resolveContainer(container) {
    return typeof container === "string" ? document.querySelector(container) : container;
  }
  window.braintree = window.braintree || {};
  window.braintree.dropin = {
    create: function (options) {
      calls.push({ name: "create", authorization: options && options.authorization });
      var container = resolveContainer(options && options.container);
      if (!options || !options.authorization) { return Promise.reject(new Error("authorization is required")); }
      if (!container) { return Promise.reject(new Error("container not found")); }
      container.setAttribute("data-dropin-ready", "true");
      var instance = {
        requestPaymentMethod: function () {
          var nonce = container.getAttribute("data-test-nonce") || window.__testNonce;
          calls.push({ name: "requestPaymentMethod", nonce: nonce || null });
          if (!nonce) { return Promise.reject(new Error("No payment method is available.")); }
          return Promise.resolve({ nonce: nonce, type: "CreditCard", details: { lastFour: "1111" } });
        },
        teardown: function () { calls.push({ name: "teardown" }); return Promise.resolve(); },
        isPaymentMethodRequestable: function () { return true; },
        on: function () {}
      };
      return Promise.resolve(instance);
    }
  };
})();
"""

_ITEM_TAGS = {
    "transactions": "transaction",
    "addresses": "address",
    "credit_cards": "credit-card",
    "add_ons": "add-on",
    "discounts": "discount",
    "errors": "error",
    "ids": "item",
    "verifications": "verification",
    "status_history": "status-event",
    "subscriptions": "subscription",
}


def _node(tag: str, value: Any) -> str:
    """One element the way Braintree's gateway writes it: dashed tags, typed scalars, arrays of items."""
    name = tag.replace("_", "-")
    if value is None:
        return f'<{name} nil="true"/>'
    if isinstance(value, bool):
        return f'<{name} type="boolean">{"true" if value else "false"}</{name}>'
    if isinstance(value, int):
        return f'<{name} type="integer">{value}</{name}>'
    if isinstance(value, datetime):
        return f'<{name} type="datetime">{value.strftime("%Y-%m-%dT%H:%M:%SZ")}</{name}>'
    if isinstance(value, date):
        return f'<{name} type="date">{value.isoformat()}</{name}>'
    if isinstance(value, dict):
        return f"<{name}>{''.join(_node(k, v) for k, v in value.items())}</{name}>"
    if isinstance(value, list):
        item = _ITEM_TAGS.get(tag, tag.rstrip("s"))
        return f'<{name} type="array">{"".join(_node(item, v) for v in value)}</{name}>'
    return f"<{name}>{escape(str(value))}</{name}>"


def to_xml(root: str, value: dict[str, Any]) -> str:
    """`value` as a Braintree gateway XML document rooted at `root`."""
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + _node(root, value)


def webhook_signature(payload: bytes | str, public_key: str, private_key: str) -> str:
    """`public_key|hex`: HMAC-SHA1 keyed with SHA1(private_key) over the base64 payload, as Braintree signs."""
    data = payload.encode() if isinstance(payload, str) else payload
    digest = hmac.new(hashlib.sha1(private_key.encode()).digest(), data, hashlib.sha1).hexdigest()
    return f"{public_key}|{digest}"


class BraintreeStandIn:
    """State and recorded requests of one merchant; `app` is the Flask app to serve."""

    def __init__(
        self,
        merchant_id: str = MERCHANT_ID,
        public_key: str = PUBLIC_KEY,
        private_key: str = PRIVATE_KEY,
        faults: Faults | None = None,
    ):
        self.merchant_id = merchant_id
        self.public_key = public_key
        self.private_key = private_key
        self.faults = faults or Faults()
        self.customers: dict[str, dict[str, Any]] = {}
        self.payment_methods: dict[str, dict[str, Any]] = {}  # token -> card
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.declining_tokens: set[str] = set()  # cards whose charges the processor declines
        self.charges: list[dict[str, Any]] = []  # every charge attempt: {subscription_id, token, amount, ok}
        self.client_tokens: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []  # {method, path, body}; never the Authorization header
        self.retry_after: str | None = None  # Braintree documents no Retry-After; set one to test it
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self.app = self._build()

    def _id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}"

    # -- seeding -------------------------------------------------------------------------------------

    def add_customer(
        self,
        customer_id: str | None = None,
        *,
        email: str = "ada@example.com",
        first_name: str = "Ada",
        last_name: str = "Lovelace",
        company: str | None = "Analytical Engines Ltd",
        country: str = "GB",
        card_declines: bool = True,
    ) -> dict[str, Any]:
        """A vaulted customer with one default card (declining, by default: the card that failed)."""
        now = datetime.now(UTC).replace(microsecond=0)
        cid = customer_id or self._id("cust")
        customer = {
            "id": cid,
            "email": email,
            "first_name": first_name,
            "last_name": last_name,
            "company": company,
            "created_at": now,
            "updated_at": now,
            "addresses": [
                {
                    "id": self._id("ad"),
                    "customer_id": cid,
                    "first_name": first_name,
                    "last_name": last_name,
                    "country_code_alpha2": country,
                    "country_name": {"GB": "United Kingdom", "US": "United States of America"}.get(country, country),
                    "postal_code": "SW1A 1AA",
                    "created_at": now,
                    "updated_at": now,
                }
            ],
        }
        with self._lock:
            self.customers[cid] = customer
            token = self._vault_card(cid, ("Visa", "0002", "400011"), make_default=True)
            if card_declines:
                self.declining_tokens.add(token)
        return customer

    def _vault_card(self, customer_id: str, card: tuple[str, str, str], make_default: bool) -> str:
        card_type, last_4, bin_ = card
        token = self._id("tok")
        now = datetime.now(UTC).replace(microsecond=0)
        existing = [pm for pm in self.payment_methods.values() if pm["customer_id"] == customer_id]
        default = make_default or not existing
        if default:
            for pm in existing:
                pm["default"] = False
        self.payment_methods[token] = {
            "token": token,
            "customer_id": customer_id,
            "default": default,
            "card_type": card_type,
            "last_4": last_4,
            "bin": bin_,
            "expiration_month": "12",
            "expiration_year": "2030",
            "expired": False,
            "cardholder_name": None,
            "created_at": now,
            "updated_at": now,
        }
        return token

    def default_token(self, customer_id: str) -> str:
        """The customer's default payment method token."""
        with self._lock:
            return next(
                t for t, pm in self.payment_methods.items() if pm["customer_id"] == customer_id and pm["default"]
            )

    def add_subscription(
        self,
        customer_id: str,
        *,
        subscription_id: str | None = None,
        price: str = "49.99",
        currency: str = "USD",
        status: str = "Active",
        payment_method_token: str | None = None,
    ) -> dict[str, Any]:
        """A monthly subscription on the customer's default card, with one settled past charge."""
        today = datetime.now(UTC).date()
        sid = subscription_id or self._id("sub")
        token = payment_method_token or self.default_token(customer_id)
        subscription: dict[str, Any] = {
            "id": sid,
            "status": status,
            "plan_id": "monthly",
            "price": Decimal(price),
            "balance": Decimal("0.00") if status != "Past Due" else Decimal(price),
            "failure_count": 0,
            "days_past_due": None,
            "current_billing_cycle": 2,
            "billing_period_start_date": today,
            "billing_period_end_date": today + timedelta(days=30),
            "next_billing_date": today + timedelta(days=30),
            "next_bill_amount": Decimal(price),
            "next_billing_period_amount": Decimal(price),
            "paid_through_date": today - timedelta(days=1),
            "merchant_account_id": f"{self.merchant_id}_{currency.lower()}",
            "payment_method_token": token,
            "customer_id": customer_id,  # not in the gateway's subscription XML: kept for the stand-in
            "currency": currency,  # likewise: a merchant account has one currency
            "created_at": datetime.now(UTC).replace(microsecond=0) - timedelta(days=40),
            "updated_at": datetime.now(UTC).replace(microsecond=0),
            "transactions": [],
        }
        subscription["transactions"].append(
            self._transaction(subscription, Decimal(price), "settled", "1000", "Approved")
        )
        with self._lock:
            self.subscriptions[sid] = subscription
        return subscription

    def _transaction(self, sub: dict[str, Any], amount: Decimal, status: str, code: str, text: str) -> dict[str, Any]:
        customer = self.customers[sub["customer_id"]]
        card = self.payment_methods.get(sub["payment_method_token"], {})
        return {
            "id": self._id("txn"),
            "status": status,
            "type": "sale",
            "amount": amount,
            "currency_iso_code": sub["currency"],
            "merchant_account_id": sub["merchant_account_id"],
            "subscription_id": sub["id"],
            "plan_id": sub["plan_id"],
            "recurring": True,
            "processor_response_code": code,
            "processor_response_text": text,
            "processor_response_type": "approved" if code == "1000" else "soft_declined",
            "payment_instrument_type": "credit_card",
            "created_at": datetime.now(UTC).replace(microsecond=0),
            "updated_at": datetime.now(UTC).replace(microsecond=0),
            "customer": {
                "id": customer["id"],
                "email": customer["email"],
                "first_name": customer["first_name"],
                "last_name": customer["last_name"],
                "company": customer["company"],
            },
            "credit_card": {
                "token": card.get("token"),
                "last_4": card.get("last_4"),
                "card_type": card.get("card_type"),
                "bin": card.get("bin"),
                "expiration_month": card.get("expiration_month"),
                "expiration_year": card.get("expiration_year"),
            },
        }

    def fail_charge(self, sub_id: str, *, code: str = "2001", text: str = "Insufficient Funds") -> dict[str, Any]:
        """A recurring charge failed: a failed transaction first, Past Due, balance and failure count up."""
        with self._lock:
            sub = self.subscriptions[sub_id]
            txn = self._transaction(sub, sub["price"], "processor_declined", code, text)
            sub["transactions"].insert(0, txn)
            sub["status"] = "Past Due"
            sub["balance"] = sub["balance"] + sub["price"]
            sub["failure_count"] += 1
            sub["days_past_due"] = (sub["days_past_due"] or 0) + 1
            sub["updated_at"] = datetime.now(UTC).replace(microsecond=0)
        return txn

    def succeed_charge(self, sub_id: str) -> dict[str, Any]:
        """Braintree's own retry charged the balance: a settled transaction first, Active, nothing owed."""
        with self._lock:
            sub = self.subscriptions[sub_id]
            txn = self._transaction(sub, sub["balance"], "settled", "1000", "Approved")
            sub["transactions"].insert(0, txn)
            sub.update(status="Active", balance=Decimal("0.00"), failure_count=0, days_past_due=None)
            sub["updated_at"] = datetime.now(UTC).replace(microsecond=0)
        return txn

    def cancel(self, sub_id: str) -> dict[str, Any]:
        """The merchant's dunning rules canceled the subscription."""
        with self._lock:
            sub = self.subscriptions[sub_id]
            sub["status"] = "Canceled"
            sub["updated_at"] = datetime.now(UTC).replace(microsecond=0)
        return sub

    # -- XML views -----------------------------------------------------------------------------------

    def subscription_view(self, sub: dict[str, Any]) -> dict[str, Any]:
        """The subscription as the gateway writes it (no customer id or currency of its own)."""
        view = {k: v for k, v in sub.items() if k not in ("customer_id", "currency", "transactions")}
        view["add_ons"] = []
        view["discounts"] = []
        view["transactions"] = [dict(t) for t in sub["transactions"]]
        return view

    def _card_view(self, token: str) -> dict[str, Any]:
        card = dict(self.payment_methods[token])
        card["subscriptions"] = [
            self.subscription_view(s) for s in self.subscriptions.values() if s["payment_method_token"] == token
        ]
        return card

    def customer_view(self, customer: dict[str, Any]) -> dict[str, Any]:
        """The customer with its vaulted cards."""
        view = dict(customer)
        view["credit_cards"] = [
            self._card_view(t) for t, pm in self.payment_methods.items() if pm["customer_id"] == customer["id"]
        ]
        return view

    def sample_notification(
        self, kind: str, subscription: dict[str, Any] | str, timestamp: datetime | None = None
    ) -> dict[str, str]:
        """A webhook delivery `{bt_signature, bt_payload}` about `subscription` (a stored id or a dict[str, Any]),
        signed with this merchant's keys the way Braintree signs (the SDK's parse accepts it)."""
        with self._lock:
            sub = self.subscriptions[subscription] if isinstance(subscription, str) else subscription
            when = (timestamp or datetime.now(UTC)).replace(microsecond=0)
            xml = (
                "<notification>"
                + _node("timestamp", when)
                + _node("kind", kind)
                + "<subject>"
                + _node("subscription", self.subscription_view(sub))
                + "</subject></notification>"
            )
        payload = base64.encodebytes(xml.encode()).decode()
        return {"bt_signature": webhook_signature(payload, self.public_key, self.private_key), "bt_payload": payload}

    # -- HTTP ----------------------------------------------------------------------------------------

    def _xml(self, root: str, value: dict[str, Any], status: int = 200) -> Response:
        return Response(to_xml(root, value), status=status, mimetype="application/xml")

    def _validation(
        self, message: str, errors: dict[str, Any], params: dict[str, Any] | None = None, **extra: Any
    ) -> Response:
        body: dict[str, Any] = {"errors": {"errors": [], **errors}, "params": params or {}, "message": message}
        body.update(extra)
        return self._xml("api_error_response", body, 422)

    def _refuse(self, entity: str, code: str, attribute: str, message: str, summary: str = "") -> Response:
        """A 422 with one validation error on `entity` (Braintree nests errors by object)."""
        error = {"code": code, "attribute": attribute, "message": message}
        return self._validation(summary or message, {entity: {"errors": [error]}})

    def _body(self) -> dict[str, Any]:
        raw = request.get_data()
        if not raw.strip():
            return {}
        parsed: dict[str, Any] = XmlUtil.dict_from_xml(raw)
        return parsed

    def _build(self) -> Flask:
        app = Flask("braintree-standin")
        prefix = "/merchants/<merchant_id>"

        @app.before_request
        def _gate() -> Response | None:
            if request.path == "/dropin.min.js":
                return None
            with self._lock:
                self.requests.append(
                    {"method": request.method, "path": request.path, "body": request.get_data(as_text=True)}
                )
            expected = "Basic " + base64.b64encode(f"{self.public_key}:{self.private_key}".encode()).decode()
            if request.headers.get("Authorization") != expected:
                return Response("", status=401)
            if not request.path.startswith(f"/merchants/{self.merchant_id}/"):
                return Response("", status=401)
            status = self.faults.verdict()
            if status == 429:
                headers = {"Retry-After": self.retry_after} if self.retry_after else {}
                return Response("", status=429, headers=headers)
            if status:
                return Response("", status=status)
            return None

        @app.get("/dropin.min.js")
        def dropin_js() -> Response:
            return Response(DROPIN_JS, mimetype="application/javascript")

        @app.post(f"{prefix}/client_token")
        def client_token(merchant_id: str) -> Response:
            params = self._body().get("client_token", {})
            customer_id = params.get("customer_id")
            with self._lock:
                if customer_id and customer_id not in self.customers:
                    return self._refuse(
                        "client_token",
                        "92804",
                        "customer_id",
                        "Customer specified by customer_id does not exist",
                        "Customer specified by customer_id does not exist",
                    )
                self.client_tokens.append(params)
            fingerprint = hashlib.sha256(f"{customer_id}:{len(self.client_tokens)}".encode()).hexdigest()
            token = base64.b64encode(
                json.dumps(
                    {
                        "version": 2,
                        "authorizationFingerprint": f"{fingerprint}?customer_id={customer_id or ''}",
                        "configUrl": f"{request.host_url}merchants/{merchant_id}/client_api/v1/configuration",
                        "environment": "sandbox",
                        "merchantId": merchant_id,
                    }
                ).encode()
            ).decode()
            return self._xml("client_token", {"value": token}, 201)

        @app.post(f"{prefix}/payment_methods")
        def create_payment_method(merchant_id: str) -> Response:
            params = self._body().get("payment_method", {})
            customer_id = params.get("customer_id")
            nonce = params.get("payment_method_nonce")
            options = params.get("options") or {}
            with self._lock:
                if customer_id not in self.customers:
                    return self._refuse(
                        "payment_method", "93105", "customer_id", "Customer ID is invalid.", "Customer ID is invalid."
                    )
                if nonce in DECLINED_NONCES:
                    card_type, last_4, bin_, code, text = DECLINED_NONCES[nonce]
                    verification = {
                        "id": self._id("ver"),
                        "status": "processor_declined",
                        "processor_response_code": code,
                        "processor_response_text": text,
                        "processor_response_type": "soft_declined",
                        "cvv_response_code": "M",
                        "avs_error_response_code": None,
                        "gateway_rejection_reason": None,
                        "amount": "0.00",
                        "currency_iso_code": "USD",
                        "credit_card": {"card_type": card_type, "last_4": last_4, "bin": bin_},
                        "created_at": datetime.now(UTC).replace(microsecond=0),
                    }
                    if not options.get("verify_card"):
                        # Without verify_card the vault accepts the card; the decline comes at charge time.
                        token = self._vault_card(
                            customer_id, (card_type, last_4, bin_), bool(options.get("make_default"))
                        )
                        self.declining_tokens.add(token)
                        return self._xml("credit_card", self._card_view(token), 201)
                    return self._validation(
                        text, {}, {"payment_method": {"customer_id": customer_id}}, verification=verification
                    )
                if nonce not in VALID_NONCES:
                    return self._refuse(
                        "payment_method",
                        "93108",
                        "payment_method_nonce",
                        "Unknown payment_method_nonce.",
                        "Unknown payment_method_nonce.",
                    )
                token = self._vault_card(customer_id, VALID_NONCES[nonce], bool(options.get("make_default")))
                return self._xml("credit_card", self._card_view(token), 201)

        @app.get(f"{prefix}/customers/<customer_id>")
        def find_customer(merchant_id: str, customer_id: str) -> Response:
            with self._lock:
                customer = self.customers.get(customer_id)
                if customer is None:
                    return Response("", status=404)
                return self._xml("customer", self.customer_view(customer))

        @app.get(f"{prefix}/subscriptions/<sub_id>")
        def find_subscription(merchant_id: str, sub_id: str) -> Response:
            with self._lock:
                sub = self.subscriptions.get(sub_id)
                if sub is None:
                    return Response("", status=404)
                return self._xml("subscription", self.subscription_view(sub))

        @app.put(f"{prefix}/subscriptions/<sub_id>")
        def update_subscription(merchant_id: str, sub_id: str) -> Response:
            params = self._body().get("subscription", {})
            with self._lock:
                sub = self.subscriptions.get(sub_id)
                if sub is None:
                    return Response("", status=404)
                if sub["status"] == "Canceled":
                    return self._refuse(
                        "subscription",
                        "81901",
                        "base",
                        "Cannot edit a canceled subscription.",
                        "Subscription has been canceled and cannot be edited.",
                    )
                if sub["status"] == "Past Due" and ({"price", "plan_id", "add_ons", "discounts"} & set(params)):
                    return self._refuse(
                        "subscription",
                        "91920",
                        "base",
                        "Cannot edit price changing fields on past due subscription.",
                        "Cannot edit price changing fields on past due subscription.",
                    )
                token = params.get("payment_method_token")
                if token is not None:
                    card = self.payment_methods.get(token)
                    if card is None or card["customer_id"] != sub["customer_id"]:
                        return self._refuse(
                            "subscription",
                            "91903",
                            "payment_method_token",
                            "Payment method token is invalid.",
                            "Payment method token is invalid.",
                        )
                    sub["payment_method_token"] = token
                sub["updated_at"] = datetime.now(UTC).replace(microsecond=0)
                return self._xml("subscription", self.subscription_view(sub))

        @app.put(f"{prefix}/subscriptions/<sub_id>/cancel")
        def cancel_subscription(merchant_id: str, sub_id: str) -> Response:
            with self._lock:
                if sub_id not in self.subscriptions:
                    return Response("", status=404)
                return self._xml("subscription", self.subscription_view(self.cancel(sub_id)))

        @app.post(f"{prefix}/transactions")
        def create_transaction(merchant_id: str) -> Response:
            params = self._body().get("transaction", {})
            sub_id = params.get("subscription_id")
            with self._lock:
                sub = self.subscriptions.get(sub_id or "")
                if sub is None:
                    return self._refuse(
                        "transaction",
                        "91528",
                        "subscription_id",
                        "Subscription ID is invalid.",
                        "Subscription ID is invalid.",
                    )
                if sub["status"] != "Past Due":
                    return self._refuse(
                        "transaction",
                        "91531",
                        "base",
                        "Subscription status must be Past Due in order to retry.",
                        "Subscription status must be Past Due in order to retry.",
                    )
                amount = Decimal(params["amount"]) if params.get("amount") else sub["balance"]
                token = sub["payment_method_token"]
                sandbox_code = sandbox_decline(amount)
                declined = token in self.declining_tokens or sandbox_code is not None
                settle = bool((params.get("options") or {}).get("submit_for_settlement"))
                if declined:
                    code = sandbox_code or "2001"
                    text = PROCESSOR_TEXTS.get(code, "Processor Declined")
                    txn = self._transaction(sub, amount, "processor_declined", code, text)
                else:
                    txn = self._transaction(
                        sub, amount, "submitted_for_settlement" if settle else "authorized", "1000", "Approved"
                    )
                self.charges.append(
                    {
                        "subscription_id": sub_id,
                        "token": token,
                        "amount": amount,
                        "ok": not declined,
                        "transaction_id": txn["id"],
                    }
                )
                sub["transactions"].insert(0, txn)
                if declined:
                    sub["failure_count"] += 1
                    return self._validation(
                        txn["processor_response_text"],
                        {},
                        {"transaction": {"subscription_id": sub_id}},
                        transaction=txn,
                    )
                sub["balance"] = max(Decimal("0.00"), sub["balance"] - amount)
                if sub["balance"] == 0:
                    sub.update(status="Active", failure_count=0, days_past_due=None)
                sub["updated_at"] = datetime.now(UTC).replace(microsecond=0)
                return self._xml("transaction", txn, 201)

        @app.post(f"{prefix}/subscriptions/advanced_search_ids")
        def search_ids(merchant_id: str) -> Response:
            criteria = self._body().get("search", {})
            with self._lock:
                ids = [s["id"] for s in self._search(criteria)]
            return self._xml("search_results", {"page_size": 50, "ids": ids})

        @app.post(f"{prefix}/subscriptions/advanced_search")
        def search(merchant_id: str) -> Response:
            criteria = self._body().get("search", {})
            with self._lock:
                found = [self.subscription_view(s) for s in self._search(criteria)]
            xml = '<?xml version="1.0" encoding="UTF-8"?>\n<subscriptions type="collection">'
            xml += "".join(_node("subscription", s) for s in found) + "</subscriptions>"
            return Response(xml, mimetype="application/xml")

        return app

    def _search(self, criteria: dict[str, Any]) -> list[dict[str, Any]]:
        statuses = criteria.get("status")
        ids = criteria.get("ids")
        found = []
        for sub in sorted(self.subscriptions.values(), key=lambda s: s["id"]):
            if statuses is not None and sub["status"] not in statuses:
                continue
            if ids is not None and sub["id"] not in ids:
                continue
            found.append(sub)
        return found
