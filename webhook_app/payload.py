"""Defensive readers for provider payloads: every translator reads fields through these.

A validly signed event can still carry values the database cannot hold (a NUL, a lone surrogate, a
number past BIGINT, a date past year 9999) or of the wrong type. Each reader returns the value in the
form the core stores, or raises `BadPayload` naming the field (never its value), so the event stops
as failed with a clear reason instead of a 500 or a crash loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from webhook_app.errors import BadPayload

# What the database columns can hold: BIGINT amounts, and times before year 10000.
MAX_AMOUNT = 2**63 - 1
MAX_UNIX_TIME = 253402300799
MAX_TEXT = 2048


def plain(value: str) -> bool:
    """Printable ASCII: what provider ids, event types and versions are made of.

    A NUL (PostgreSQL refuses it: a 503 on every retry) or a lone surrogate (no database can encode
    it: a 500) must be refused as malformed instead.
    """
    return value.isascii() and value.isprintable()


def dig(obj: Any, *path: str) -> Any:
    """`obj[path[0]][path[1]]...`, or None where any step is missing or not a mapping."""
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def text(value: Any, name: str) -> str | None:
    """A string the database can store, or None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadPayload(f"field {name!r} must be a string")
    if len(value) > MAX_TEXT or "\x00" in value:
        raise BadPayload(f"field {name!r} is too long or contains NUL")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a \ud800 escape: not storable text
        raise BadPayload(f"field {name!r} is not valid Unicode") from None
    return value


def display(value: Any, name: str, limit: int = 255) -> str | None:
    """Display text (a name, an invoice number): shortened to what the column holds, not refused."""
    return (text(value, name) or "")[:limit] or None


def ident(value: Any, name: str = "id") -> str:
    """A provider object id as the database can store it; BadPayload otherwise."""
    if not isinstance(value, str) or not value or len(value) > 255:
        raise BadPayload(f"field {name!r} is not an id")
    return text(value, name) or ""


def ref(value: Any, name: str = "id") -> str | None:
    """A reference that is an id string or an expanded object with an `id`; None when absent."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return ident(value, name) if isinstance(value, str) else None


def integer(value: Any, name: str, default: int | None = None, maximum: int = MAX_AMOUNT) -> int:
    """An integer within the column's range (`default` when the value is missing)."""
    if value is None and default is not None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadPayload(f"field {name!r} must be an integer")
    if not -maximum <= value <= maximum:
        raise BadPayload(f"field {name!r} is out of range")
    return value


def email(value: Any, name: str = "customer_email") -> str | None:
    """An email address as the column holds it (RFC 5321's 320 characters)."""
    address = text(value, name)
    if address is not None and len(address) > 320:
        raise BadPayload(f"field {name!r} is longer than an email address can be")
    return address or None


def unix_time(value: Any, name: str) -> datetime | None:
    """Unix seconds as naive UTC, or None."""
    if value is None:
        return None
    seconds = integer(value, name, maximum=MAX_UNIX_TIME)
    if seconds < 0:
        raise BadPayload(f"field {name!r} is out of range")
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)


def iso_time(value: Any, name: str) -> datetime | None:
    """An RFC 3339 / ISO 8601 time (`2026-11-02T10:00:00Z`, `...+00:00`) as naive UTC, or None."""
    if value is None:
        return None
    raw = text(value, name) or ""
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadPayload(f"field {name!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def currency(value: Any, name: str = "currency") -> str:
    """A three-letter ISO 4217 code, lower case."""
    code = text(value, name)
    if not code or len(code) != 3 or not code.isascii() or not code.isalpha():
        raise BadPayload(f"field {name!r} is not an ISO 4217 code")
    return code.lower()


def country(value: Any, name: str = "country") -> str | None:
    """A two-letter ISO 3166 country code, upper case, or None when absent or not one."""
    code = text(value, name)
    if code and len(code) == 2 and code.isascii() and code.isalpha():
        return code.upper()
    return None
