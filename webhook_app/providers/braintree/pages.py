"""`/pay/braintree/<token>`: the update page we serve for Braintree, which has no hosted one.

GET shows what is owed and Braintree's Drop-in UI (https://developer.paypal.com/braintree/docs/guides/
drop-in/setup-and-integration/javascript/v3) with a client token for the customer, minted now (they are
valid up to 24 h). Drop-in tokenizes the card in Braintree's own iframes; our script posts the nonce back
with the form. POST hands it to `charges.submit_card`: card saved as the default (verified), the
subscription moved onto it, the balance charged once while still Past Due; the answer page says what
happened. Reloads, double submits and a second tab never charge twice (see `charges`).

Security:
- The URL's token (`tokens.page_url`) is signed, names one case and expires in 2 h; pages send
  `Referrer-Policy: no-referrer` so it never leaks to Braintree's CDN, and `Cache-Control: no-store`.
- Forms carry a signed, per-render form key (`tokens.form_key`) bound to the case: a POST needs a form we
  served for that case within the page's lifetime. There is no cookie or session to ride on, so a cross-site
  form cannot submit in the customer's name; the key's random part also names the submission (idempotency).
- A case takes at most MAX_SUBMISSIONS_PER_HOUR submissions: card testing needs many.
- The page's own Content-Security-Policy allows scripts from here and Braintree's hosts only, per Braintree's
  list (https://braintree.github.io/braintree-web/current/#content-security-policy; `style-src
  'unsafe-inline'` is required by Drop-in). Outside production, with BRAINTREE_API_BASE pointing at a
  stand-in, Drop-in is loaded from `<BRAINTREE_API_BASE>/dropin.min.js` instead (browser tests): in production
  the script and the policy are always Braintree's.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import Blueprint, Response, render_template, request
from itsdangerous import BadSignature, SignatureExpired

from webhook_app import tokens
from webhook_app.config import Settings
from webhook_app.errors import ConfigurationNeeded, RecoveryError, ResourceMissing
from webhook_app.models import DunningCase, PageCharge
from webhook_app.money import format_amount
from webhook_app.observability import report_exception
from webhook_app.providers.braintree import charges
from webhook_app.providers.braintree.client import BraintreeClient
from webhook_app.services import Services, services
from webhook_app.states import PageChargeStatus

log = logging.getLogger(__name__)
bp = Blueprint("braintree_pages", __name__)

PAGE = "braintree"
DROPIN_VERSION = "1.48.0"
DROPIN_CDN = f"https://js.braintreegateway.com/web/dropin/{DROPIN_VERSION}/js/dropin.min.js"
ASSETS = "https://assets.braintreegateway.com"
# Where Drop-in itself talks to (its card fields live in iframes on ASSETS, under their own policy).
CONNECT = {
    "production": (
        "https://api.braintreegateway.com",
        "https://client-analytics.braintreegateway.com",
        "https://payments.braintree-api.com",
    ),
    "sandbox": (
        "https://api.sandbox.braintreegateway.com",
        "https://client-analytics.sandbox.braintreegateway.com",
        "https://payments.sandbox.braintree-api.com",
    ),
}
HEADINGS = {
    "charged": "Thank you: your payment went through",
    "not_due": "Your card is saved",
    "pending": "We are confirming your payment",
    "too_many": "Please try again later",
    "stale_form": "This page has expired",
}
NONCE = re.compile(r"^[A-Za-z0-9_\-]{1,200}$")
PENDING_REFRESH_SECONDS = 3


def _stand_in(settings: Settings) -> str | None:
    """The stand-in gateway serving a Drop-in stub: only outside production, and only when configured."""
    return None if settings.is_production else settings.braintree.api_base


def dropin_script(settings: Settings) -> str:
    """The Drop-in script URL: Braintree's CDN (a stand-in's stub in tests, never in production)."""
    stand_in = _stand_in(settings)
    return f"{stand_in}/dropin.min.js" if stand_in else DROPIN_CDN


def content_security_policy(settings: Settings) -> str:
    """The update page's policy: our own files, Braintree's hosts, nothing else."""
    stand_in = _stand_in(settings)
    scripts = f"'self' {stand_in}" if stand_in else "'self' https://js.braintreegateway.com " + ASSETS
    connect = " ".join(CONNECT.get(settings.braintree.environment, CONNECT["production"]))
    return (
        f"default-src 'none'; script-src {scripts}; style-src 'self' 'unsafe-inline' {ASSETS}; "
        f"img-src 'self' data: {ASSETS}; frame-src {ASSETS}; connect-src {connect}; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )


def _page(template: str, status: int, *, policy: str | None = None, **context: Any) -> Response:
    svc = services()
    html = render_template(
        template, company=svc.settings.links.company_name, return_url=svc.settings.links.return_url, **context
    )
    response = Response(html, status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"  # the token in the URL must not leak
    if policy:
        response.headers["Content-Security-Policy"] = policy
    return response


def _result(outcome: str, status: int, amount: str, charge: PageCharge | None = None) -> Response:
    return _page(
        "braintree_result.html", status, outcome=outcome, heading=HEADINGS[outcome], amount=amount, charge=charge
    )


def _see_the_page() -> Response:
    """303 to the page itself (Post/Redirect/Get): a reload of what follows never re-posts the form."""
    return Response(
        status=303,
        headers={"Location": request.path, "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


def _unavailable() -> Response:
    response = _page("link_unavailable.html", 503)
    response.headers["Retry-After"] = "60"
    return response


def _client(svc: Services) -> BraintreeClient | None:
    return getattr(svc.providers.get(PAGE), "client", None)


def _case(svc: Services, token: str) -> DunningCase | Response:
    """The token's case, or the page saying why there is none."""
    try:
        data = tokens.read_page_token(svc.settings.links, PAGE, token)
    except SignatureExpired:
        return _page("link_expired.html", 410)
    except BadSignature:
        return _page("link_invalid.html", 404)
    with svc.db.session() as s:
        case = s.get(DunningCase, data["c"])
        s.expunge_all()
    if case is None or case.provider != PAGE:
        return _page("link_invalid.html", 404)
    return case


def _amount(case: DunningCase, charge: PageCharge | None = None) -> str:
    if charge is not None and charge.amount is not None and charge.currency:
        return format_amount(charge.amount, charge.currency)
    return format_amount(case.amount_due, case.currency)


def _form(
    svc: Services,
    client: BraintreeClient,
    case: DunningCase,
    amount: str,
    message: str | None = None,
    status: int = 200,
) -> Response:
    """The card form: a client token for the customer and a fresh form key."""
    try:
        client_token = client.client_token(case.customer_id)
    except ResourceMissing:
        return _page("link_invalid.html", 404)
    except (RecoveryError, ConfigurationNeeded) as exc:
        log.error("update page: no client token: %s", exc, extra={"case_id": case.id, "provider": PAGE})
        report_exception(exc)
        return _unavailable()
    form_key, _ = tokens.form_key(svc.settings.links, PAGE, case.id)
    return _page(
        "braintree_pay.html",
        status,
        policy=content_security_policy(svc.settings),
        amount=amount,
        client_token=client_token,
        form_key=form_key,
        message=message,
        dropin_url=dropin_script(svc.settings),
    )


def _outcome(svc: Services, client: BraintreeClient, case: DunningCase, charge: PageCharge) -> Response:
    """The page for a submission's state (shown to the request that made it and to any repeat of it)."""
    amount = _amount(case, charge)
    if charge.status == PageChargeStatus.CHARGED:
        return _see_the_page()
    if charge.status in (PageChargeStatus.STARTED, PageChargeStatus.CHARGING):
        response = _result("pending", 202, amount, charge)
        response.headers["Refresh"] = f"{PENDING_REFRESH_SECONDS}; url={request.path}"
        return response
    if charge.status == PageChargeStatus.NOT_DUE:
        return _result("not_due", 200, amount, charge)
    status = 503 if charge.status == PageChargeStatus.FAILED else 200
    return _form(svc, client, case, _amount(case), message=charge.message or charges.UNREACHABLE, status=status)


@bp.get("/pay/braintree/<token>")
def show(token: str) -> Response:
    """The update page: what is owed and the card form; or what happened, once it was used."""
    svc = services()
    case = _case(svc, token)
    if isinstance(case, Response):
        return case
    client = _client(svc)
    if client is None:
        return _unavailable()
    charge = charges.live(svc, case.id)
    if charge is not None:
        charge = charges.reconcile(svc, client, case, charge)
        if charge.status == PageChargeStatus.CHARGED:
            return _result("charged", 200, _amount(case, charge), charge)
        if charge.status in (PageChargeStatus.STARTED, PageChargeStatus.CHARGING):
            return _outcome(svc, client, case, charge)
    if not case.is_open:
        return _page("link_settled.html", 200, case=case)
    try:
        invoice = svc.billing(PAGE).retrieve_invoice(case.invoice_id)
    except ResourceMissing:
        return _page("link_invalid.html", 404)
    except (RecoveryError, ConfigurationNeeded) as exc:
        log.error("update page: could not read the subscription: %s", exc, extra={"case_id": case.id})
        return _unavailable()
    if invoice.is_closed:
        charges.settle(svc, case)  # its webhook may still be on its way
        return _page("link_settled.html", 200, case=case)
    return _form(svc, client, case, format_amount(invoice.remaining, invoice.currency))


@bp.post("/pay/braintree/<token>")
def submit(token: str) -> Response:
    """A submission of the card form: handled once per rendered form, whatever the repeats."""
    svc = services()
    case = _case(svc, token)
    if isinstance(case, Response):
        return case
    client = _client(svc)
    if client is None:
        return _unavailable()
    key = tokens.read_form_key(svc.settings.links, PAGE, request.form.get("form_key", ""), case.id)
    if key is None:
        return _result("stale_form", 400, _amount(case), None)
    repeat = charges.by_form_key(svc, key)
    if repeat is not None:  # a double submit or a reload: show what the first one did
        return _outcome(svc, client, case, charges.reconcile(svc, client, case, repeat))
    if not case.is_open:
        return _see_the_page()
    nonce = request.form.get("payment_method_nonce", "")
    if not NONCE.match(nonce):
        return _form(svc, client, case, _amount(case), message="Please enter your card details.", status=422)
    now = svc.clock.now()
    if charges.recent_submissions(svc, case.id, now) >= charges.MAX_SUBMISSIONS_PER_HOUR:
        log.warning("update page: too many submissions", extra={"case_id": case.id, "provider": PAGE})
        response = _result("too_many", 429, _amount(case), None)
        response.headers["Retry-After"] = "3600"
        return response
    try:
        charge, new = charges.claim(svc, case, key)
    except charges.ChargeBusy as busy:
        if busy.charge is None:
            return _form(svc, client, case, _amount(case), message="Please try again.")
        return _outcome(svc, client, case, charges.reconcile(svc, client, case, busy.charge))
    if not new:
        return _outcome(svc, client, case, charges.reconcile(svc, client, case, charge))
    try:
        charge = charges.submit_card(svc, client, case, charge, nonce)
    except ResourceMissing:
        return _page("link_invalid.html", 404)
    except ConfigurationNeeded as exc:
        report_exception(exc)
        return _unavailable()
    return _outcome(svc, client, case, charge)
