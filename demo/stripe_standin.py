"""The Stripe stand-in of `tests/standins/stripe.py`, plus the page a person uses to fail a payment.

The shared stand-in serves the API the app calls (invoices, portal sessions with idempotency keys,
balance), delivers signed webhooks to the app, and serves the portal page where "Save card and pay"
pays the customer's open invoices. This module adds `/` (a form and the invoices so far) and
`POST /demo/fail` (also for scripts: JSON in, JSON out).
"""

from __future__ import annotations

from flask import Response, jsonify, redirect, request
from markupsafe import escape

from tests.standins.stripe import StripeStandIn


def build(webhook_url: str, webhook_secret: str) -> StripeStandIn:
    """A Stripe stand-in delivering to `webhook_url`, with the demo's page on its app."""
    stripe = StripeStandIn()
    stripe.webhook_url = webhook_url
    stripe.webhook_secret = webhook_secret
    app = stripe.app

    @app.get("/")
    def home() -> str:
        rows = "".join(
            f"<tr><td>{escape(i['id'])}</td><td>{escape(i['customer_email'])}</td>"
            f"<td>${i['amount_due'] / 100:.2f}</td><td>{escape(i['status'])}</td></tr>"
            for i in list(stripe.invoices.values())
        )
        return _page(
            "Stripe (demo stand-in)",
            f"""<form method="post" action="/demo/fail">
            <p><label>Customer email <input name="email" value="jane@example.com"></label></p>
            <p><label>Customer name <input name="name" value="Jane Doe"></label></p>
            <p><label>Amount (USD) <input name="amount" value="49.00"></label></p>
            <p><button>Fail a payment</button></p></form>
            <table border="1" cellpadding="4"><tr><th>invoice</th><th>customer</th><th>amount</th>
            <th>status</th></tr>{rows}</table>""",
        )

    @app.post("/demo/fail")
    def demo_fail() -> Response | tuple[Response, int]:
        data = request.get_json(silent=True) or request.form
        try:
            amount = round(float(data.get("amount", "49.00")) * 100)
        except ValueError:
            return jsonify({"error": "amount must be a number, e.g. 49.00"}), 400
        result = stripe.fail_payment(
            data.get("email") or "jane@example.com", data.get("name") or "Jane Doe", amount, data.get("customer")
        )
        if request.is_json:
            return jsonify(result)
        return redirect("/")  # type: ignore[return-value]

    return stripe


def _page(title: str, body: str) -> str:
    return f"<!doctype html><title>{escape(title)}</title><h1>{escape(title)}</h1>{body}"
