"""Money in minor units: how many decimals a currency has, and how to show an amount.

Amounts are integers in the currency's minor unit everywhere in the app (cents, yen, fils), as
Stripe, Chargebee and Paddle send them; providers that send decimals (Recurly, Braintree) are
converted exactly, never through floats, by `to_minor_units`.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from webhook_app.errors import BadPayload

# https://docs.stripe.com/currencies#zero-decimal
ZERO_DECIMAL = frozenset(
    ["bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"]
)
# https://docs.stripe.com/currencies#three-decimal
THREE_DECIMAL = frozenset(["bhd", "jod", "kwd", "omr", "tnd"])
SYMBOLS = {
    "usd": "$",
    "eur": "€",
    "gbp": "£",
    "jpy": "¥",
    "krw": "₩",
    "inr": "₹",
    "aud": "A$",
    "cad": "CA$",
    "nzd": "NZ$",
    "brl": "R$",
    "chf": "CHF ",
    "sek": "SEK ",
    "mxn": "MX$",
}


def minor_unit_exponent(currency: str) -> int:
    """Digits after the decimal point for `currency` (ISO 4217 as the billing systems count them)."""
    c = currency.lower()
    if c in ZERO_DECIMAL:
        return 0
    if c in THREE_DECIMAL:
        return 3
    return 2


def to_decimal(amount: int, currency: str) -> Decimal:
    """Minor units to a Decimal in major units: (4900, "usd") -> 49.00, (500, "jpy") -> 500."""
    exponent = minor_unit_exponent(currency)
    return (Decimal(amount) / (Decimal(10) ** exponent)).quantize(Decimal(1).scaleb(-exponent))


def to_minor_units(amount: object, currency: str) -> int:
    """Major units (a Decimal, a decimal string, or a JSON number) to exact minor units.

    `49.9` USD -> 4990, `500` JPY -> 500, `"1.005"` KWD -> 1005. A value with more decimals than the
    currency has is refused (BadPayload) rather than rounded: money is never changed silently.
    """
    if isinstance(amount, bool) or not isinstance(amount, (int, float, str, Decimal)):
        raise BadPayload("amount must be a number")
    try:
        # str() first: a JSON float such as 0.3 is read as the decimal it was written as.
        value = Decimal(str(amount).strip())
    except InvalidOperation:
        raise BadPayload("amount is not a decimal number") from None
    if not value.is_finite():
        raise BadPayload("amount is not a finite number")
    scaled = value.scaleb(minor_unit_exponent(currency))
    if scaled != scaled.to_integral_value():
        raise BadPayload(f"amount has more decimals than {currency.upper()} allows")
    return int(scaled)


def format_amount(amount: int, currency: str) -> str:
    """Human money: "$49.00", "¥500", "-€12.50", "KWD 1.500"."""
    value = to_decimal(amount, currency)
    sign = "-" if value < 0 else ""
    symbol = SYMBOLS.get(currency.lower(), currency.upper() + " ")
    return f"{sign}{symbol}{abs(value):,}"
