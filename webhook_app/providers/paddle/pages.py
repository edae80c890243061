"""`GET /pay/paddle/<token>`: our update page, where Paddle.js opens the checkout on a transaction.

The customer arrives here from `/r/<token>` (webhook_app.links), which fetched the transaction from
Paddle a moment ago and signed its id into this page's token (`tokens.page_url`, two hours). The page
reads nothing from Paddle itself, so it renders at once: the merchant's name, what is owed, and a button
that opens Paddle's overlay checkout (also opened on load). Its own script is a static file; the
Content-Security-Policy (`checkout.PaddleJs`) allows that file and Paddle's hosts, nothing else.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, render_template
from itsdangerous import BadSignature, SignatureExpired

from webhook_app import tokens
from webhook_app.models import DunningCase
from webhook_app.money import format_amount
from webhook_app.providers.paddle.checkout import paddle_js
from webhook_app.providers.paddle.translate import PROVIDER
from webhook_app.services import services

log = logging.getLogger(__name__)
bp = Blueprint("paddle_pages", __name__)


def _page(template: str, status: int, csp: str | None = None, **context: Any) -> Response:
    links = services().settings.links
    html = render_template(template, company=links.company_name, return_url=links.return_url, **context)
    response = Response(html, status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    # The token is in the path: Paddle's frames may learn this origin, never the URL.
    response.headers["Referrer-Policy"] = "strict-origin"
    if csp:
        response.headers["Content-Security-Policy"] = csp
    return response


@bp.get("/pay/paddle/<token>")
def update_page(token: str) -> Response:
    """The checkout page for one case's transaction (410 expired, 404 unknown, settled when paid)."""
    svc = services()
    try:
        data = tokens.read_page_token(svc.settings.links, PROVIDER, token)
    except SignatureExpired:
        return _page("link_expired.html", 410)
    except BadSignature:
        return _page("link_invalid.html", 404)
    transaction_id = data.get("r")
    if not isinstance(transaction_id, str) or not transaction_id.startswith("txn_"):
        return _page("link_invalid.html", 404)
    with svc.db.session() as s:
        case = s.get(DunningCase, data["c"])
        s.expunge_all()
    if case is None or case.provider != PROVIDER:
        return _page("link_invalid.html", 404)
    if not case.is_open:
        return _page("link_settled.html", 200)
    settings = svc.settings.paddle
    if not settings.client_token:  # update_link refuses to mint this page without it; set since?
        log.error("Paddle update page opened but PADDLE_CLIENT_TOKEN is not set", extra={"case_id": case.id})
        response = _page("link_unavailable.html", 503)
        response.headers["Retry-After"] = "60"
        return response
    script = paddle_js(svc.settings)
    return _page(
        "pay_paddle.html",
        200,
        csp=script.content_security_policy(),
        amount=format_amount(case.amount_due, case.currency),
        invoice_number=case.invoice_number,
        customer_name=case.customer_name,
        transaction_id=transaction_id,
        client_token=settings.client_token,
        environment=settings.environment,
        paddle_js=script.url,
    )
