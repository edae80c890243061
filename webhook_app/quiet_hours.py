"""Quiet hours: hold a message that would arrive in the customer's night until their morning.

The customer's time zone is guessed from the invoice's `customer_address.country` (the first zone
pytz lists for that country: its most populous one); without a country the window applies in UTC.
Off unless `QUIET_HOURS` is set (e.g. `21-8`: hold from 21:00 to 08:00 local time).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytz


def customer_zone(country: str | None) -> tzinfo:
    """The customer's likely time zone, or UTC when unknown."""
    zones = pytz.country_timezones.get((country or "").upper()) if country else None
    if zones:
        try:
            return ZoneInfo(zones[0])
        except ZoneInfoNotFoundError:
            pass
    return UTC


def quiet_until(now_utc: datetime, country: str | None, window: tuple[int, int]) -> datetime | None:
    """When to send instead of `now_utc` (naive UTC), or None when it is not quiet time there."""
    start, end = window
    zone = customer_zone(country)
    local = now_utc.replace(tzinfo=UTC).astimezone(zone)
    hour = local.hour
    quiet = (start <= hour or hour < end) if start > end else (start <= hour < end)
    if not quiet:
        return None
    morning = local.replace(hour=end, minute=0, second=0, microsecond=0)
    if morning <= local:
        morning += timedelta(days=1)
    # ZoneInfo derives the offset from the wall time, so a DST change overnight is accounted for.
    return morning.astimezone(UTC).replace(tzinfo=None)
