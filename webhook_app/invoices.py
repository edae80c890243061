"""One normalized view of a Stripe invoice, whatever the API version of the payload.

Events arrive in the webhook endpoint's API version, which need not be the SDK's pinned one. Before
2025-03-31.basil an invoice carried `subscription`, `payment_intent`, `charge`, `paid` and
`paid_out_of_band` at the top level; since basil the subscription lives at
`parent.subscription_details.subscription` and payment state is only `status` (see Stripe's changelog
"Adds support for multiple (partial) payments on invoices"). Amounts stay integers in minor units.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from webhook_app.clock import from_unix
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
    """Digits after the decimal point for `currency` as Stripe counts minor units."""
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


def format_amount(amount: int, currency: str) -> str:
    """Human money: "$49.00", "¥500", "-€12.50", "KWD 1.500"."""
    value = to_decimal(amount, currency)
    sign = "-" if value < 0 else ""
    symbol = SYMBOLS.get(currency.lower(), currency.upper() + " ")
    return f"{sign}{symbol}{abs(value):,}"


def _id(value: Any) -> str | None:
    """A Stripe reference is an id string, or an expanded object with an `id`."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return stripe_id(value) if isinstance(value, str) else None


def stripe_id(value: Any, name: str = "id") -> str:
    """A Stripe object id as the database can store it; BadPayload otherwise."""
    if not isinstance(value, str) or not value or len(value) > 255:
        raise BadPayload(f"field {name!r} is not a Stripe id")
    return _str(value, name)


# What the database columns can hold: BIGINT amounts, and times before year 10000.
MAX_AMOUNT = 2**63 - 1
MAX_UNIX_TIME = 253402300799
MAX_TEXT = 2048


def _int(value: Any, name: str, default: int | None = None, maximum: int = MAX_AMOUNT) -> int:
    if value is None and default is not None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadPayload(f"invoice field {name!r} must be an integer")
    if not -maximum <= value <= maximum:
        raise BadPayload(f"invoice field {name!r} is out of range")
    return value


def _str(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadPayload(f"invoice field {name!r} must be a string")
    if len(value) > MAX_TEXT or "\x00" in value:
        raise BadPayload(f"invoice field {name!r} is too long or contains NUL")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a \ud800 escape: not storable text
        raise BadPayload(f"invoice field {name!r} is not valid Unicode") from None
    return value


def _email(value: Any) -> str | None:
    email = _str(value, "customer_email")
    if email is not None and len(email) > 320:  # RFC 5321's limit; the column's too
        raise BadPayload("invoice field 'customer_email' is longer than an email address can be")
    return email


def _time(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    seconds = _int(value, name, maximum=MAX_UNIX_TIME)
    if seconds < 0:
        raise BadPayload(f"invoice field {name!r} is out of range")
    return from_unix(seconds)


def _dig(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


@dataclass(frozen=True)
class InvoiceView:
    """The fields the recovery flow needs, in one shape for every API version."""

    id: str
    customer_id: str
    customer_email: str | None
    customer_name: str | None
    number: str | None
    currency: str
    amount_due: int
    amount_paid: int
    amount_remaining: int
    attempt_count: int
    next_payment_attempt: datetime | None
    hosted_invoice_url: str | None
    status: str | None
    subscription_id: str | None
    billing_reason: str | None
    collection_method: str | None
    livemode: bool
    paid_out_of_band: bool
    failure_reason: str | None
    paid_at: datetime | None
    customer_country: str | None

    @property
    def is_paid(self) -> bool:
        return self.status == "paid"

    @property
    def is_closed(self) -> bool:
        """Nothing left to collect: paid, voided or written off."""
        return self.status in ("paid", "void", "uncollectible")

    @property
    def amount_display(self) -> str:
        return format_amount(self.amount_due, self.currency)

    @classmethod
    def from_stripe(cls, obj: Any) -> InvoiceView:
        """Normalize an invoice dict from an event's `data.object` or an API response."""
        if not isinstance(obj, Mapping) or obj.get("object", "invoice") != "invoice":
            raise BadPayload("event data.object is not an invoice")
        invoice_id = _str(obj.get("id"), "id")
        customer_id = _id(obj.get("customer"))
        currency = _str(obj.get("currency"), "currency")
        if not invoice_id or not customer_id or not currency:
            raise BadPayload("invoice lacks id, customer or currency")
        if len(currency) != 3 or not currency.isascii() or not currency.isalpha():
            raise BadPayload("invoice field 'currency' is not an ISO 4217 code")
        status = _str(obj.get("status"), "status")
        legacy_paid = obj.get("paid")
        if status is None and legacy_paid is True:
            status = "paid"
        subscription = _id(_dig(obj, "parent", "subscription_details", "subscription")) or _id(obj.get("subscription"))
        return cls(
            id=invoice_id,
            customer_id=customer_id,
            customer_email=_email(obj.get("customer_email")),
            # Display text: shortened to what the column holds rather than refusing the event.
            customer_name=(_str(obj.get("customer_name"), "customer_name") or "")[:255] or None,
            number=(_str(obj.get("number"), "number") or "")[:255] or None,
            currency=currency.lower(),
            amount_due=_int(obj.get("amount_due"), "amount_due", 0),
            amount_paid=_int(obj.get("amount_paid"), "amount_paid", 0),
            amount_remaining=_int(obj.get("amount_remaining"), "amount_remaining", 0),
            attempt_count=_int(obj.get("attempt_count"), "attempt_count", 0),
            next_payment_attempt=_time(obj.get("next_payment_attempt"), "next_payment_attempt"),
            hosted_invoice_url=_str(obj.get("hosted_invoice_url"), "hosted_invoice_url"),
            status=status,
            subscription_id=subscription,
            billing_reason=_str(obj.get("billing_reason"), "billing_reason"),
            collection_method=_str(obj.get("collection_method"), "collection_method"),
            livemode=bool(obj.get("livemode", False)),
            paid_out_of_band=obj.get("paid_out_of_band") is True,
            failure_reason=_failure_reason(obj),
            paid_at=_time(_dig(obj, "status_transitions", "paid_at"), "status_transitions.paid_at"),
            customer_country=_str(_dig(obj, "customer_address", "country"), "customer_address.country"),
        )


def _failure_reason(obj: Mapping) -> str | None:
    """The decline reason where the payload carries one (only when charge / PI were expanded)."""
    candidates = (
        _dig(obj, "payment_intent", "last_payment_error", "decline_code"),
        _dig(obj, "payment_intent", "last_payment_error", "code"),
        _dig(obj, "charge", "failure_code"),
        _dig(obj, "charge", "outcome", "reason"),
        _dig(obj, "last_finalization_error", "code"),
    )
    for value in candidates:
        if isinstance(value, str) and value:
            return value[:255]
    return None
