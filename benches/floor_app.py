"""The floor for the ack-path benchmark: Flask that only verifies the Stripe signature and answers 200.

It runs under the same `gunicorn.conf.py` as the app, so the ratio app/floor is the cost of what the
app does on top of "verify and answer" (parse, validate, store in the inbox, log).
    gunicorn --config gunicorn.conf.py benches.floor_app:app
"""

from __future__ import annotations

import os

import stripe
from flask import Flask, jsonify, request

SECRET = os.environ["STRIPE_WEBHOOK_SECRET"]
TOLERANCE = 300

app = Flask(__name__)


@app.post("/webhooks/stripe")
def receive():
    """Verify the signature over the raw body; 200 if valid, 400 otherwise."""
    try:
        stripe.WebhookSignature.verify_header(
            request.get_data(as_text=True), request.headers.get("Stripe-Signature", ""), SECRET, TOLERANCE
        )
    except stripe.SignatureVerificationError:
        return jsonify({"error": "invalid_delivery"}), 400
    return jsonify({"received": True}), 200


@app.get("/healthz")
def healthz():
    return "ok"
