"""Braintree SDK objects (subscriptions, transactions, customers) as the plain dicts the app uses.

Amounts keep Braintree's Decimal as a string (`"49.99"`) and add exact minor units (`4999`) where the
currency is known; extra digits are refused (BadPayload), never rounded.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from webhook_app.money import to_minor_units


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _date(value: Any) -> str | None:
    """ISO text; the SDK parses the gateway's `…Z` times as naive datetimes, which are UTC."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return _text(value)


def _money(value: Any, currency: str | None, field: str) -> tuple[str | None, int | None]:
    """(Decimal string, exact minor units or None when the currency is unknown)."""
    if value is None or value == "":
        return None, None
    amount = Decimal(value) if not isinstance(value, Decimal) else value
    return str(amount), (to_minor_units(amount, currency, field) if currency else None)


def transaction_dict(transaction: Any) -> dict[str, Any]:
    """A transaction as a plain dict (amount as a Decimal string and as exact minor units)."""
    currency = _text(getattr(transaction, "currency_iso_code", None))
    amount, amount_minor = _money(getattr(transaction, "amount", None), currency, "transaction.amount")
    details = getattr(transaction, "customer_details", None)
    return {
        "id": _text(getattr(transaction, "id", None)),
        "type": _text(getattr(transaction, "type", None)),  # sale | credit (a refund)
        "status": _text(getattr(transaction, "status", None)),
        "amount": amount,
        "amount_minor": amount_minor,
        "currency_iso_code": currency,
        "processor_response_code": _text(getattr(transaction, "processor_response_code", None)),
        "processor_response_text": _text(getattr(transaction, "processor_response_text", None)),
        "created_at": _date(getattr(transaction, "created_at", None)),
        "customer_details": {
            "id": _text(getattr(details, "id", None)),
            "email": _text(getattr(details, "email", None)),
        },
    }


def subscription_dict(subscription: Any) -> dict[str, Any]:
    """A subscription as a plain dict. Braintree gives a subscription no currency or customer of its own:
    both come from its newest transaction (`currency`, `customer_id`), None when it has none."""
    transactions = [transaction_dict(t) for t in getattr(subscription, "transactions", None) or []]
    currency = next((t["currency_iso_code"] for t in transactions if t["currency_iso_code"]), None)
    customer_id = next((t["customer_details"]["id"] for t in transactions if t["customer_details"]["id"]), None)
    balance, balance_minor = _money(getattr(subscription, "balance", None), currency, "subscription.balance")
    price, price_minor = _money(getattr(subscription, "price", None), currency, "subscription.price")
    failure_count = getattr(subscription, "failure_count", None)
    return {
        "id": _text(getattr(subscription, "id", None)),
        "status": _text(getattr(subscription, "status", None)),
        "balance": balance,
        "balance_minor": balance_minor,
        "price": price,
        "price_minor": price_minor,
        "failure_count": failure_count if isinstance(failure_count, int) else None,
        "days_past_due": getattr(subscription, "days_past_due", None),
        "next_billing_date": _date(getattr(subscription, "next_billing_date", None)),
        "payment_method_token": _text(getattr(subscription, "payment_method_token", None)),
        "merchant_account_id": _text(getattr(subscription, "merchant_account_id", None)),
        "currency": currency,
        "customer_id": customer_id,
        "transactions": transactions,
    }


def customer_dict(customer: Any) -> dict[str, Any]:
    """A customer as a plain dict: id, email, names, company, address countries, default card token."""
    addresses = getattr(customer, "addresses", None) or []
    methods = getattr(customer, "payment_methods", None) or []
    default = next((m for m in methods if getattr(m, "default", False)), None)
    return {
        "id": _text(getattr(customer, "id", None)),
        "email": _text(getattr(customer, "email", None)),
        "first_name": _text(getattr(customer, "first_name", None)),
        "last_name": _text(getattr(customer, "last_name", None)),
        "company": _text(getattr(customer, "company", None)),
        "addresses": [
            {
                "country_code_alpha2": _text(getattr(a, "country_code_alpha2", None)),
                "country_name": _text(getattr(a, "country_name", None)),
            }
            for a in addresses
        ],
        "default_payment_method_token": _text(getattr(default, "token", None)) if default is not None else None,
    }
