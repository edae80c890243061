"""The latest payment attempt's error, read from Stripe objects of both API generations.

Before 2025-03-31.basil an invoice carried its payment at the top level: `payment_intent` and `charge`
(ids, or objects when expanded). The PaymentIntent's `last_payment_error` has `code`, `decline_code`,
`advice_code`, `network_decline_code`, `network_advice_code`; a Charge has `failure_code` and
`outcome.{type, reason, advice_code, network_decline_code, network_advice_code}` (for an issuer decline
`outcome.reason` is the decline code; for a Radar block it is e.g. `highest_risk_level`).
https://docs.stripe.com/api/payment_intents/object#payment_intent_object-last_payment_error,
https://docs.stripe.com/api/charges/object#charge_object-outcome

Since basil those fields are gone from the invoice (changelog "Adds support for multiple (partial)
payments on invoices"); its payments are InvoicePayment objects, listed by
`GET /v1/invoice_payments?invoice=in_…&expand[]=data.payment.payment_intent`
(https://docs.stripe.com/api/invoice-payment/list). Each has `status` (open | paid | canceled),
`created`, and `payment.type` (payment_intent | charge | payment_record) with the matching
`payment.payment_intent` / `payment.charge` / `payment.payment_record`. The same list shape is what an
invoice retrieved with `expand[]=payments.data.payment.payment_intent` carries in `payments`.

Reading is defensive, like `webhook_app.payload`: a container of the wrong shape (not an invoice,
a list without `data`) is a BadPayload; a leaf value that is not a plausible Stripe code is ignored, so
an odd payload degrades to "unknown" instead of stopping a recovery that does not depend on it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from webhook_app.declines import Decline
from webhook_app.errors import BadPayload
from webhook_app.payload import dig as _dig
from webhook_app.payload import ident as stripe_id

INVOICE_PAYMENTS_PATH = "/v1/invoice_payments"
INVOICE_PAYMENTS_LIMIT = 10  # Stripe's default page; lists come newest first and invoices rarely have more

# Stripe's codes are snake_case words; network codes are short alphanumerics ("05", "N7").
_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_FIELDS = ("code", "decline_code", "advice_code", "network_decline_code", "network_advice_code")


def invoice_payments_params(invoice_id: str) -> dict[str, Any]:
    """Parameters for `GET /v1/invoice_payments` (SDK: `stripe.InvoicePayment.list(**params)`).

    The newest payments of one invoice, each with its PaymentIntent expanded so that
    `last_payment_error` comes back in the same call.
    """
    return {
        "invoice": stripe_id(invoice_id, "invoice"),
        "expand": ["data.payment.payment_intent"],
        "limit": INVOICE_PAYMENTS_LIMIT,
    }


def _code(value: Any) -> str | None:
    """A plausible Stripe code, else None (missing, not a string, too long, odd characters)."""
    return value if isinstance(value, str) and _CODE.fullmatch(value) else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _codes_from_error(error: Any) -> dict[str, str | None]:
    """The five code fields of a PaymentIntent's `last_payment_error` (an API error object)."""
    if not isinstance(error, Mapping):
        return dict.fromkeys(_FIELDS)
    return {name: _code(error.get(name)) for name in _FIELDS}


def _codes_from_charge(charge: Any) -> dict[str, str | None]:
    """The same five fields as a failed Charge reports them (`failure_code`, `outcome`)."""
    if not isinstance(charge, Mapping):
        return dict.fromkeys(_FIELDS)
    outcome = charge.get("outcome")
    outcome = outcome if isinstance(outcome, Mapping) else {}
    # `outcome.reason` names the decline (issuer_declined) or the block (blocked, e.g. highest_risk_level);
    # on an authorized or reviewed charge it is about Radar's verdict, not a failure.
    reason = outcome.get("reason") if outcome.get("type") not in ("authorized", "manual_review") else None
    return {
        "code": _code(charge.get("failure_code")),
        "decline_code": _code(reason),
        "advice_code": _code(outcome.get("advice_code")),
        "network_decline_code": _code(outcome.get("network_decline_code")),
        "network_advice_code": _code(outcome.get("network_advice_code")),
    }


def _merge(*sources: dict[str, str | None]) -> dict[str, str | None]:
    """Field by field, the first source that knows it (the PaymentIntent's error before its charge's)."""
    return {name: next((s[name] for s in sources if s[name]), None) for name in _FIELDS}


def _latest_charge(payment_intent: Mapping[str, Any]) -> Any:
    """The PaymentIntent's latest charge when it was expanded (`latest_charge`, or pre-2022 `charges`)."""
    latest = payment_intent.get("latest_charge")
    if isinstance(latest, Mapping):
        return latest
    charges = _dig(payment_intent, "charges", "data")
    if isinstance(charges, list) and charges and isinstance(charges[0], Mapping):
        return charges[0]  # Stripe lists newest first
    return None


def _decline(codes: dict[str, str | None], *, action_required: bool = False) -> Decline | None:
    if not action_required and not any(codes.values()):
        return None
    return Decline.of(
        codes["code"],
        codes["decline_code"],
        codes["advice_code"],
        network_decline_code=codes["network_decline_code"],
        network_advice_code=codes["network_advice_code"],
        action_required=action_required,
    )


def decline_from_payment_intent(payment_intent: Any) -> Decline | None:
    """The decline a PaymentIntent reports: its `last_payment_error`, completed by its expanded charge.

    A PaymentIntent in `requires_action` needs the customer to authenticate (3-D Secure), with or
    without an error. None when it reports no failure, or is not an expanded object.
    """
    if not isinstance(payment_intent, Mapping):
        return None
    error = payment_intent.get("last_payment_error")
    codes = _merge(_codes_from_error(error), _codes_from_charge(_latest_charge(payment_intent)))
    action_required = payment_intent.get("status") == "requires_action"
    decline = _decline(codes, action_required=action_required)
    if decline is None and isinstance(error, Mapping):
        return Decline.of()  # it failed, and Stripe said nothing about why
    return decline


def decline_from_charge(charge: Any) -> Decline | None:
    """The decline a Charge reports (`failure_code`, `outcome`); None for a charge that did not fail."""
    return _decline(_codes_from_charge(charge))


def decline_from_invoice_payments(list_response: Any) -> Decline | None:
    """The newest invoice payment's decline, from a `GET /v1/invoice_payments` list (API basil and later).

    Canceled payments are history and are skipped; the newest remaining one (by `created`, the list's
    own newest-first order breaking ties) decides: paid -> None, otherwise its PaymentIntent's (or
    charge's) error. Needs `expand[]=data.payment.payment_intent` (see `invoice_payments_params`); an
    unexpanded id reads as "nothing known" (None).
    """
    if not isinstance(list_response, Mapping):
        raise BadPayload("the invoice payments list is not an object")
    data = list_response.get("data")
    if not isinstance(data, list):
        raise BadPayload("the invoice payments list has no 'data' array")
    payments = [
        (position, item)
        for position, item in enumerate(data)
        if isinstance(item, Mapping) and item.get("object", "invoice_payment") == "invoice_payment"
    ]
    live = [(position, item) for position, item in payments if item.get("status") != "canceled"]
    if not live:
        return None
    _, newest = max(live, key=lambda pair: (_int(pair[1].get("created")), -pair[0]))
    if newest.get("status") == "paid":
        return None
    payment = newest.get("payment")
    if not isinstance(payment, Mapping):
        return None
    kind = payment.get("type")
    if kind == "payment_intent":
        return decline_from_payment_intent(payment.get("payment_intent"))
    if kind == "charge":
        return decline_from_charge(payment.get("charge"))
    return None  # payment_record (payments recorded from outside Stripe) carry no decline fields


def decline_from_legacy_invoice(invoice: Any) -> Decline | None:
    """The decline an invoice payload of an API version before basil carries, when expanded.

    Reads `payment_intent.last_payment_error` and `charge.{failure_code, outcome}` (each only when
    expanded to an object; an id is "nothing known"). A paid invoice has no current decline: None.
    Basil-or-later payloads have neither field and also give None: read their invoice payments instead.
    """
    if not isinstance(invoice, Mapping) or invoice.get("object", "invoice") != "invoice":
        raise BadPayload("event data.object is not an invoice")
    if invoice.get("status") == "paid" or invoice.get("paid") is True:
        return None
    from_intent = decline_from_payment_intent(invoice.get("payment_intent"))
    charge_codes = _codes_from_charge(invoice.get("charge"))
    if from_intent is None:
        return _decline(charge_codes)
    # The invoice's own charge may know what the PaymentIntent's error left out (e.g. outcome.advice_code).
    intent_codes = {name: getattr(from_intent, name) for name in _FIELDS}
    merged = _merge(intent_codes, charge_codes)
    action_required = _dig(invoice, "payment_intent", "status") == "requires_action"
    return _decline(merged, action_required=action_required) or from_intent


def decline_for_invoice(invoice: Any, invoice_payments: Any = None) -> Decline | None:
    """One entry point for either generation: the legacy fields first, then the invoice payments.

    `invoice_payments` is the `GET /v1/invoice_payments` list response when the caller fetched it; an
    invoice retrieved with its `payments` expanded is read the same way.
    """
    decline = decline_from_legacy_invoice(invoice)
    if decline is not None:
        return decline
    if invoice_payments is not None:
        return decline_from_invoice_payments(invoice_payments)
    expanded = invoice.get("payments")
    if isinstance(expanded, Mapping) and isinstance(expanded.get("data"), list):
        return decline_from_invoice_payments(expanded)
    return None
