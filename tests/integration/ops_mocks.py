"""requests-mock stand-ins for the slices of Stripe and Loops the operator commands use.

They keep state (invoices, events, portal configurations, webhook endpoints, accepted emails), page
like Stripe (`limit`, `starting_after`, `has_more`), honour idempotency keys like both providers, and
can be told to answer 429 or to fail for given customers. Only HTTP is faked: our code and the Stripe
SDK run for real.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections import Counter
from urllib.parse import parse_qsl, urlsplit

from tests.fixtures import stripe_objects

STRIPE_BASE = "https://stripe.mock.test"
LOOPS_BASE = "https://loops.mock.test/api"
LOOPS_KEY = "loops_test_key_0123456789"


class SimulatedCrash(BaseException):
    """The process dying mid-run (not an Exception: nothing in the app may swallow it)."""


def decode(pairs: list[tuple[str, str]]) -> dict:
    """Stripe's form/query encoding (`a[b][c]=v`, `a[0]=v`) back into nested dicts and lists."""
    root: dict = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _listify(root)


def _listify(node):
    if isinstance(node, dict):
        if node and all(k.isdigit() for k in node):
            return [_listify(node[k]) for k in sorted(node, key=int)]
        return {k: _listify(v) for k, v in node.items()}
    return node


def _error(context, status: int, message: str, code: str | None = None, type_: str = "invalid_request_error"):
    context.status_code = status
    body = {"message": message, "type": type_}
    if code:
        body["code"] = code
    return {"error": body}


class StripeMock:
    """A Stripe account in memory, served through requests-mock at `STRIPE_BASE`."""

    def __init__(self, mocker, *, livemode: bool = False):
        self.livemode = livemode
        self.key_valid = True
        self.invoices: list[dict] = []  # newest first, as Stripe lists them
        self.events: list[dict] = []
        self.portal_configurations: dict[str, dict] = {}
        self.webhook_endpoints: dict[str, dict] = {}
        self.sessions: list[dict] = []
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, params)
        self.throttle: Counter = Counter()  # path -> how many 429s to answer before serving
        self.outage: Counter = Counter()  # path -> how many 500s to answer before serving
        self.missing_customers: set[str] = set()
        self.portal_configured = True  # False: portal sessions fail as on an account never set up
        self.payment_intents: dict[str, dict] = {}
        self.settled_at_send: set[str] = set()  # customers whose invoices are paid when re-read
        # Settlement: invoice id -> its InvoicePayments (basil and later), and the objects they point at
        # (payment intents, charges, balance transactions) by id, expanded on request like Stripe.
        self.invoice_payments: dict[str, list[dict]] = {}
        self.objects: dict[str, dict] = {}
        self._ids = itertools.count(1)
        self._idempotent: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._register(mocker)

    # -- set-up helpers ------------------------------------------------------------------------------
    def add_portal_configuration(self, **fields) -> dict:
        config = {
            "id": f"bpc_{next(self._ids):04d}",
            "object": "billing_portal.configuration",
            "active": True,
            "is_default": False,
            "livemode": self.livemode,
            "metadata": {},
            "created": next(self._ids),
            "features": {"payment_method_update": {"enabled": True}},
            **fields,
        }
        self.portal_configurations[config["id"]] = config
        return config

    def add_webhook_endpoint(self, url: str, events: list[str], status: str = "enabled", **fields) -> dict:
        endpoint = {
            "id": f"we_{next(self._ids):04d}",
            "object": "webhook_endpoint",
            "url": url,
            "enabled_events": events,
            "status": status,
            "livemode": self.livemode,
            "metadata": {},
            "api_version": None,
            **fields,
        }
        self.webhook_endpoints[endpoint["id"]] = endpoint
        return endpoint

    def add_objects(self, *objects: dict) -> None:
        """Payment intents, charges and balance transactions that `expand[]` and retrieves can reach."""
        for obj in objects:
            self.objects[obj["id"]] = obj

    def expand(self, obj: dict, paths: list[str]) -> dict:
        """A copy of `obj` with each `expand[]` path's ids replaced by their objects."""
        return stripe_objects.expand(obj, paths, self.objects)

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p, _ in self.requests if m == method and p == path)

    # -- HTTP ----------------------------------------------------------------------------------------
    def _register(self, mocker) -> None:
        routes = [
            ("GET", r"/v1/invoices", self._list_invoices),
            ("GET", r"/v1/invoices/(?P<id>[^/?]+)", self._get_invoice),
            ("GET", r"/v1/invoice_payments", self._list_invoice_payments),
            ("GET", r"/v1/payment_intents/(?P<id>[^/?]+)", self._get_payment_intent),
            ("GET", r"/v1/balance_transactions/(?P<id>[^/?]+)", self._get_object),
            ("GET", r"/v1/charges/(?P<id>[^/?]+)", self._get_object),
            ("POST", r"/v1/billing_portal/sessions", self._create_session),
            ("GET", r"/v1/events", self._list_events),
            ("GET", r"/v1/balance", self._balance),
            ("GET", r"/v1/billing_portal/configurations", self._list_configurations),
            ("POST", r"/v1/billing_portal/configurations", self._create_configuration),
            ("GET", r"/v1/billing_portal/configurations/(?P<id>[^/?]+)", self._get_configuration),
            ("POST", r"/v1/billing_portal/configurations/(?P<id>[^/?]+)", self._update_configuration),
            ("GET", r"/v1/webhook_endpoints", self._list_endpoints),
            ("POST", r"/v1/webhook_endpoints", self._create_endpoint),
            ("POST", r"/v1/webhook_endpoints/(?P<id>[^/?]+)", self._update_endpoint),
        ]
        for method, pattern, handler in routes:
            regex = re.compile(re.escape(STRIPE_BASE) + pattern + r"(\?.*)?$")
            mocker.register_uri(method, regex, json=self._wrap(method, pattern, handler))

    def _wrap(self, method, pattern, handler):
        def respond(request, context):
            path = urlsplit(request.url).path
            query = parse_qsl(urlsplit(request.url).query, keep_blank_values=True)
            body = parse_qsl(request.text or "", keep_blank_values=True) if method == "POST" else []
            params = decode(query + body)
            with self._lock:
                self.requests.append((method, path, params))
                if not self.key_valid:
                    return _error(context, 401, "Invalid API Key provided: sk_test_****0000")
                if self.throttle[path] > 0:
                    self.throttle[path] -= 1
                    return _error(context, 429, "Request rate limit exceeded.", "rate_limit", "rate_limit_error")
                if self.outage[path] > 0:
                    self.outage[path] -= 1
                    return _error(context, 500, "Something went wrong on Stripe's end.", type_="api_error")
            key = request.headers.get("Idempotency-Key")
            if method == "POST" and key:
                with self._lock:
                    if key in self._idempotent:
                        return self._idempotent[key]
            match = re.search(pattern + "$", path)
            result = handler(params, context, **match.groupdict())
            if method == "POST" and key and context.status_code == 200:
                with self._lock:
                    self._idempotent[key] = result
            return result

        return respond

    def _page(self, items: list[dict], params: dict, url: str) -> dict:
        limit = int(params.get("limit", 10))
        start = 0
        if params.get("starting_after"):
            ids = [item["id"] for item in items]
            start = ids.index(params["starting_after"]) + 1
        chunk = items[start : start + limit]
        return {"object": "list", "url": url, "data": chunk, "has_more": start + limit < len(items)}

    def _list_invoices(self, params, context):
        items = [
            i
            for i in self.invoices
            if i["status"] == params.get("status", i["status"])
            and i["collection_method"] == params.get("collection_method", i["collection_method"])
            and i["customer"] == params.get("customer", i["customer"])
        ]
        if params.get("customer") in self.settled_at_send:
            items = []
        return self._page(items, params, "/v1/invoices")

    def _get_payment_intent(self, params, context, id):
        if id not in self.payment_intents:
            return _error(context, 404, f"No such payment_intent: '{id}'", "resource_missing")
        return self.payment_intents[id]

    def _get_invoice(self, params, context, id):
        invoice = next((i for i in self.invoices if i["id"] == id), None)
        if invoice is None:
            return _error(context, 404, f"No such invoice: '{id}'", "resource_missing")
        if invoice["customer"] in self.settled_at_send:
            return {**invoice, "status": "paid", "amount_remaining": 0}
        return self.expand(invoice, _as_list(params.get("expand")))

    def _list_invoice_payments(self, params, context):
        if "invoice" not in params:
            return _error(context, 400, "Missing required param: invoice.")
        known = params["invoice"] in self.invoice_payments or any(i["id"] == params["invoice"] for i in self.invoices)
        if not known:
            return _error(context, 404, f"No such invoice: '{params['invoice']}'", "resource_missing")
        page = self._page(self.invoice_payments.get(params["invoice"], []), params, "/v1/invoice_payments")
        return self.expand(page, _as_list(params.get("expand")))

    def _get_object(self, params, context, id):
        if id not in self.objects:
            return _error(context, 404, f"No such object: '{id}'", "resource_missing")
        return self.expand(self.objects[id], _as_list(params.get("expand")))

    def _create_session(self, params, context):
        customer = params.get("customer")
        if not self.portal_configured:
            return _error(
                context,
                400,
                "No configuration provided and your test mode default configuration has "
                "not been created. Provide a configuration or create your default by saving "
                "your customer portal settings in test mode.",
            )
        if customer in self.missing_customers:
            return _error(context, 404, f"No such customer: '{customer}'", "resource_missing")
        n = next(self._ids)
        session = {
            "id": f"bps_{n}",
            "object": "billing_portal.session",
            "customer": customer,
            "url": f"https://billing.stripe.mock/p/session/bps_{n}",
            "livemode": self.livemode,
            "configuration": params.get("configuration"),
        }
        with self._lock:
            self.sessions.append({**session, "params": params})
        return session

    def _list_events(self, params, context):
        items = list(self.events)
        if "types" in params:
            items = [e for e in items if e["type"] in params["types"]]
        if params.get("delivery_success") == "false":
            items = [e for e in items if not e.get("_delivered", False)]
        if "created" in params and "gte" in params["created"]:
            items = [e for e in items if e["created"] >= int(params["created"]["gte"])]
        page = self._page(items, params, "/v1/events")
        page["data"] = [{k: v for k, v in e.items() if k != "_delivered"} for e in page["data"]]
        return page

    def _balance(self, params, context):
        return {"object": "balance", "livemode": self.livemode, "available": [], "pending": []}

    def _list_configurations(self, params, context):
        items = list(self.portal_configurations.values())
        if "is_default" in params:
            items = [c for c in items if c["is_default"] == (params["is_default"] == "true")]
        return self._page(items, params, "/v1/billing_portal/configurations")

    def _apply_configuration(self, config: dict, params: dict) -> None:
        for key, value in params.items():
            if key in ("features", "business_profile", "metadata"):
                merged = config.setdefault(key, {})
                for sub, subvalue in value.items():
                    if isinstance(subvalue, dict):
                        merged.setdefault(sub, {}).update({k: _typed(v) for k, v in subvalue.items()})
                    else:
                        merged[sub] = _typed(subvalue)
            else:
                config[key] = _typed(value)

    def _create_configuration(self, params, context):
        config = self.add_portal_configuration(features={})
        self._apply_configuration(config, params)
        return config

    def _get_configuration(self, params, context, id):
        if id not in self.portal_configurations:
            return _error(context, 404, f"No such configuration: '{id}'", "resource_missing")
        return self.portal_configurations[id]

    def _update_configuration(self, params, context, id):
        if id not in self.portal_configurations:
            return _error(context, 404, f"No such configuration: '{id}'", "resource_missing")
        self._apply_configuration(self.portal_configurations[id], params)
        return self.portal_configurations[id]

    def _list_endpoints(self, params, context):
        return self._page(list(self.webhook_endpoints.values()), params, "/v1/webhook_endpoints")

    def _create_endpoint(self, params, context):
        endpoint = self.add_webhook_endpoint(
            params["url"],
            params["enabled_events"],
            metadata=params.get("metadata", {}),
            api_version=params.get("api_version"),
            description=params.get("description"),
        )
        return {**endpoint, "secret": f"whsec_created_{endpoint['id']}_secretvalue"}

    def _update_endpoint(self, params, context, id):
        endpoint = self.webhook_endpoints[id]
        if "enabled_events" in params:
            endpoint["enabled_events"] = params["enabled_events"]
        if "disabled" in params:
            endpoint["status"] = "disabled" if params["disabled"] == "true" else "enabled"
        for key in ("url", "description"):
            if key in params:
                endpoint[key] = params[key]
        endpoint["metadata"] = {**endpoint.get("metadata", {}), **params.get("metadata", {})}
        return endpoint


def _as_list(value) -> list:
    return [] if value is None else value if isinstance(value, list) else [value]


def _typed(value):
    return {"true": True, "false": False}.get(value, value) if isinstance(value, str) else value


class LoopsMock:
    """Loops' transactional endpoint and key check; a repeated Idempotency-Key answers 409 like Loops."""

    def __init__(self, mocker):
        self.accepted: list[dict] = []
        self.keys: set[str] = set()
        self.key_valid = True
        self.throttle = 0  # 429s to answer before accepting again
        self.reject_emails: set[str] = set()
        self.crash_after: int | None = None  # accepted messages before the process "dies"
        self.crash_before_answer = True  # die before (True) or after (False) Loops accepts the next one
        self.dead = False  # once "dead", every call raises until the test revives it
        self.requests = 0
        self._lock = threading.Lock()
        mocker.post(f"{LOOPS_BASE}/v1/transactional", json=self._transactional)
        mocker.get(f"{LOOPS_BASE}/v1/api-key", json=self._api_key)

    def _api_key(self, request, context):
        if not self.key_valid or request.headers.get("Authorization") != f"Bearer {LOOPS_KEY}":
            context.status_code = 401
            return {"success": False, "message": "Invalid API key"}
        return {"success": True, "teamName": "Acme Cloud"}

    def _transactional(self, request, context):
        body = json.loads(request.text)
        key = request.headers.get("Idempotency-Key")
        with self._lock:
            self.requests += 1
            if self.throttle > 0:
                self.throttle -= 1
                context.status_code = 429
                # Loops documents no Retry-After; a tiny one keeps the adapter's own pause short in tests.
                context.headers["Retry-After"] = "0.01"
                return {"success": False, "message": "Rate limit exceeded"}
            if self.dead:
                raise SimulatedCrash("the process is gone")
            if self.crash_after is not None and self.crash_before_answer and len(self.accepted) >= self.crash_after:
                self.dead = True
                raise SimulatedCrash("killed before Loops got the message")
            if body["email"] in self.reject_emails:
                context.status_code = 400
                return {"success": False, "message": "Invalid email address"}
            if key in self.keys:
                context.status_code = 409
                return {"success": False, "message": "Idempotency key has already been used"}
            self.keys.add(key)
            self.accepted.append({"key": key, **body})
            if self.crash_after is not None and not self.crash_before_answer and len(self.accepted) >= self.crash_after:
                self.dead = True
                raise SimulatedCrash("killed after Loops accepted the message, before we recorded it")
        return {"success": True, "id": f"msg_{len(self.accepted)}"}

    def revive(self) -> None:
        """A new process: no more crashing."""
        self.dead, self.crash_after = False, None

    def emails(self) -> list[str]:
        """The recipient of every accepted message (one entry per email Loops would send)."""
        return [m["email"] for m in self.accepted]


def ops_config(database_url: str, **overrides) -> dict:
    """The shared test configuration, with Stripe and Loops pointed at these stand-ins."""
    from tests.conftest import base_config

    settings = dict(
        STRIPE_API_BASE=STRIPE_BASE,
        STRIPE_MAX_RETRIES=0,
        MESSAGING_PROVIDER="loops",
        LOOPS_API_KEY=LOOPS_KEY,
        LOOPS_TRANSACTIONAL_ID="tx_recovery",
        LOOPS_API_BASE=LOOPS_BASE,
        LOOPS_RATE_PER_SECOND=5000,
    )
    settings.update(overrides)
    return base_config(database_url, **settings)


def make_ops_app(database_url: str, clock, *, migrate_db: bool = True, **overrides):
    """An app with the real Stripe adapter and messenger (only HTTP is mocked), migrated by default."""
    from webhook_app import create_app, migrate

    app = create_app(ops_config(database_url, **overrides), clock=clock)
    if migrate_db:
        with app.app_context():
            migrate.upgrade(app.extensions["webhook_app"].db)
    return app


class OpsEnv:
    """An app wired to the stand-ins, inside its app context: `svc`, `stripe`, `loops`, `cli(...)`."""

    def __init__(self, app, stripe: StripeMock, loops: LoopsMock):
        from webhook_app.services import services

        self.app, self.stripe, self.loops = app, stripe, loops
        self.svc = services()

    def cli(self, *args: str):
        """Run `webhook-app <args>` in-process; returns click's Result (output, exit_code)."""
        return self.app.test_cli_runner().invoke(args=list(args))


def open_ops_env(database_url: str, clock, *, env_class=OpsEnv, migrate_db: bool = True, **overrides):
    """(env, close): requests-mock started, the app built and its context pushed; `close()` undoes it."""
    import requests_mock

    mocker = requests_mock.Mocker(case_sensitive=True)
    mocker.start()
    stripe, loops = StripeMock(mocker), LoopsMock(mocker)
    try:
        app = make_ops_app(database_url, clock, migrate_db=migrate_db, **overrides)
    except BaseException:
        mocker.stop()
        raise
    ctx = app.app_context()
    ctx.push()

    def close():
        ctx.pop()
        app.extensions["webhook_app"].db.dispose()
        mocker.stop()

    env = env_class(app, stripe, loops)
    env.mocker = mocker  # for one-off routes (e.g. another provider)
    return env, close
