"""Braintree amounts: Decimals in major units ("49.99" USD, "500" JPY), converted to exact minor units.

Braintree's XML carries amounts as decimal strings and the SDK turns them into `Decimal`
(braintree/transaction.py, subscription.py). The currency decides the exponent (the same table the
Stripe side uses, `webhook_app.invoices.minor_unit_exponent`). An amount with more digits than the
currency has ("49.999" USD, "500.5" JPY) is not rounded: it is refused with BadPayload, because a
rounded ledger entry would be a silent finance error.
"""

from __future__ import annotations

from decimal import Context, Decimal, InvalidOperation

from webhook_app.errors import BadPayload
from webhook_app.invoices import minor_unit_exponent

_MAX_DIGITS = 18
_EXACT = Context(prec=80, Emin=-999, Emax=999)  # no rounding for any amount within the bounds


def to_decimal(amount: object, field: str = "amount") -> Decimal:
    """`amount` (Decimal, or a decimal string from the XML) as a finite Decimal; BadPayload otherwise."""
    if isinstance(amount, Decimal):
        value = amount
    elif isinstance(amount, str) and amount.strip() and len(amount) <= 40:
        try:
            value = Decimal(amount.strip())
        except InvalidOperation:
            raise BadPayload(f"Braintree amount {field!r} is not a decimal number") from None
    else:
        raise BadPayload(f"Braintree amount {field!r} is not a decimal number")
    if not value.is_finite():
        raise BadPayload(f"Braintree amount {field!r} is not a finite number")
    return value


def to_minor_units(amount: object, currency: str, field: str = "amount") -> int:
    """Exact minor units of a major-unit amount: ("49.99", "USD") -> 4999, ("500", "JPY") -> 500.

    Refuses (BadPayload) extra digits ("49.999" USD), non-numbers and absurdly large values.
    """
    if not isinstance(currency, str) or not currency.isascii() or len(currency) != 3 or not currency.isalpha():
        raise BadPayload(f"Braintree currency for {field!r} is not an ISO 4217 code")
    value = to_decimal(amount, field)
    # Bounds first, from the digits alone: scaling "1e999999999" overflows the context, "1e-999999999"
    # underflows silently to 0, and int() of a huge Decimal would build a billion-digit number.
    if value and not -_MAX_DIGITS <= value.adjusted() < _MAX_DIGITS:
        raise BadPayload(f"Braintree amount {field!r} is out of range")
    scaled = value.scaleb(minor_unit_exponent(currency), _EXACT)
    if scaled.adjusted() >= _MAX_DIGITS:
        raise BadPayload(f"Braintree amount {field!r} is out of range")
    if scaled != scaled.to_integral_value():
        raise BadPayload(f"Braintree amount {field!r} has more decimal places than {currency.upper()} allows")
    return int(scaled)
