"""Paddle amounts: strings of minor units ("1500" is $15.00, "500" is ¥500), read as exact integers.

https://developer.paddle.com/api-reference/about/data-types (amounts are strings "in the lowest
denomination for a currency, e.g. cents for USD"). A float, a decimal point or an empty string is a
payload we do not understand: refused with BadPayload rather than guessed at.
"""

from __future__ import annotations

import re

from webhook_app.errors import BadPayload

_MINOR = re.compile(r"-?[0-9]{1,18}")  # 18 digits stay far inside int64 for any database column


def minor_units(value: object, field: str = "amount") -> int:
    """`value` (a Paddle amount string such as "65215") as an int of minor units; BadPayload otherwise."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BadPayload(f"Paddle amount {field!r} is not a string of minor units")
    text = str(value)
    if not _MINOR.fullmatch(text):
        raise BadPayload(f"Paddle amount {field!r} is not a whole number of minor units")
    return int(text)
