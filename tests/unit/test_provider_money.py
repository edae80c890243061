"""Provider amounts to exact minor units: Paddle's minor-unit strings, Braintree's major-unit Decimals."""

from __future__ import annotations

from decimal import Decimal

import pytest

from webhook_app.errors import BadPayload
from webhook_app.money import to_minor_units
from webhook_app.providers.paddle.money import minor_units


@pytest.mark.parametrize(
    ("value", "expected"),
    [("65215", 65215), ("0", 0), ("500", 500), ("-1200", -1200), (4900, 4900), ("999999999999999999", 10**18 - 1)],
)
def test_paddle_minor_unit_strings_are_read_exactly(value, expected):
    assert minor_units(value) == expected


@pytest.mark.parametrize(
    "value", ["15.00", "1e3", "", " 15", "15 ", "+15", "١٢", "0x10", "1" * 19, None, True, 15.0, ["15"], {"a": 1}]
)
def test_paddle_amounts_that_are_not_whole_minor_units_are_refused(value):
    with pytest.raises(BadPayload, match="grand_total"):
        minor_units(value, "grand_total")


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("49.99", "USD", 4999),
        (Decimal("49.99"), "usd", 4999),
        ("49.9", "USD", 4990),
        ("49.9900", "USD", 4999),  # trailing zeros are not extra precision
        ("500", "JPY", 500),
        ("500.00", "JPY", 500),
        ("1.500", "KWD", 1500),
        ("0.00", "EUR", 0),
        ("-5.00", "USD", -500),
        ("9999999999999999.99", "USD", 999_999_999_999_999_999),
    ],
)
def test_braintree_major_units_convert_exactly(amount, currency, expected):
    assert to_minor_units(amount, currency) == expected


@pytest.mark.parametrize(
    ("amount", "currency", "reason"),
    [
        ("49.999", "USD", "more decimal places"),
        ("500.5", "JPY", "more decimal places"),
        ("1.5001", "KWD", "more decimal places"),
        ("NaN", "USD", "finite"),
        ("Infinity", "USD", "finite"),
        ("abc", "USD", "not a decimal"),
        ("", "USD", "not a decimal"),
        (None, "USD", "must be a number"),
        ("1e999999999", "USD", "out of range"),
        ("1e-999999999", "USD", "out of range"),  # would silently underflow to 0 in the default context
        ("99999999999999999.99", "USD", "out of range"),
        ("49.99", "US", "ISO 4217"),
        ("49.99", "U$D", "ISO 4217"),
        ("49.99", None, "ISO 4217"),
    ],
)
def test_amounts_with_extra_digits_or_nonsense_are_refused(amount, currency, reason):
    with pytest.raises(BadPayload, match=reason):
        to_minor_units(amount, currency)
