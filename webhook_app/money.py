"""Money in minor units: how many decimals a currency has, and how to show an amount.

Amounts are integers in the currency's minor unit everywhere in the app (cents, yen, fils), as
Stripe, Chargebee and Paddle send them; providers that send decimals (Recurly, Braintree) are
converted exactly, never through floats, by `to_minor_units`.
"""

from __future__ import annotations

from decimal import Context, Decimal, InvalidOperation

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


_MAX_DIGITS = 18  # BIGINT holds 18 full digits
_EXACT = Context(prec=80, Emin=-999, Emax=999)  # no rounding for any amount within the bounds


def to_minor_units(amount: object, currency: str, field: str = "amount") -> int:
    """Major units (a Decimal, a decimal string, or a JSON number) to exact minor units.

    `49.99` USD -> 4999, `500` JPY -> 500, `"1.005"` KWD -> 1005. Floats are read through `str()`
    (Python's shortest round-tripping form), so a JSON 19.99 gives 1999, never 1998 as
    `int(19.99 * 100)` does. A value with more decimals than the currency has (0.1 + 0.2 arrives as
    0.30000000000000004) is refused (BadPayload) rather than rounded: money is never changed silently.
    """
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isascii() or not currency.isalpha():
        raise BadPayload(f"the currency of {field!r} is not an ISO 4217 code")
    if isinstance(amount, bool) or not isinstance(amount, (int, float, str, Decimal)):
        raise BadPayload(f"{field!r} must be a number")
    if isinstance(amount, str) and not (amount.strip() and len(amount) <= 40):
        raise BadPayload(f"{field!r} is not a decimal number")
    try:
        value = amount if isinstance(amount, Decimal) else Decimal(str(amount).strip())
    except InvalidOperation:
        raise BadPayload(f"{field!r} is not a decimal number") from None
    if not value.is_finite():
        raise BadPayload(f"{field!r} is not a finite number")
    # Bounds first, from the digits alone: scaling "1e999999999" overflows the context, "1e-999999999"
    # underflows silently to 0, and int() of a huge Decimal would build a billion-digit number.
    if value and not -_MAX_DIGITS <= value.adjusted() < _MAX_DIGITS:
        raise BadPayload(f"{field!r} is out of range")
    scaled = value.scaleb(minor_unit_exponent(currency), _EXACT)
    if scaled.adjusted() >= _MAX_DIGITS:
        raise BadPayload(f"{field!r} is out of range")
    if scaled != scaled.to_integral_value():
        raise BadPayload(f"{field!r} has more decimal places than {currency.upper()} allows")
    return int(scaled)


def format_amount(amount: int, currency: str) -> str:
    """Human money: "$49.00", "¥500", "-€12.50", "KWD 1.500"."""
    value = to_decimal(amount, currency)
    sign = "-" if value < 0 else ""
    symbol = SYMBOLS.get(currency.lower(), currency.upper() + " ")
    return f"{sign}{symbol}{abs(value):,}"
