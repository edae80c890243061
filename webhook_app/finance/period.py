"""Reporting periods: half-open UTC intervals `[since, until)` parsed from query strings or the CLI.

A date (`2025-04-01`) names a whole UTC day, so `until=2025-06-30` includes the 30th: finance thinks in
inclusive calendar days, the queries in half-open intervals (no row is ever counted in two periods).
A full ISO 8601 time (`2025-04-01T09:30:00Z`) is taken as an exact instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

DEFAULT_DAYS = 90


class PeriodError(ValueError):
    """A period parameter is malformed; the message is safe to show."""


@dataclass(frozen=True)
class Period:
    """A half-open interval of naive UTC datetimes (the form every timestamp is stored in)."""

    since: datetime
    until: datetime

    @property
    def since_date(self) -> date:
        """The first calendar day in the period (for date inputs)."""
        return self.since.date()

    @property
    def until_date(self) -> date:
        """The last calendar day in the period, inclusive (for date inputs)."""
        last = self.until - timedelta(microseconds=1)
        return last.date()

    @property
    def label(self) -> str:
        """`2025-04-01 – 2025-06-30`: inclusive days, as finance reads them."""
        return f"{self.since_date.isoformat()} – {self.until_date.isoformat()}"

    def as_dict(self) -> dict[str, str | None]:
        """ISO 8601 UTC bounds for JSON (`until` is exclusive)."""
        return {"since": iso(self.since), "until": iso(self.until)}


def iso(value: datetime | None) -> str | None:
    """A stored naive-UTC datetime as ISO 8601 with a Z: `2025-04-10T10:00:00Z`."""
    if value is None:
        return None
    return value.replace(microsecond=0).isoformat() + "Z"


def _parse_bound(raw: str, name: str, *, end: bool) -> datetime:
    raw = raw.strip()
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            start = datetime.combine(day, time())
            return start + timedelta(days=1) if end else start
        value = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise PeriodError(f"{name} must be a date (YYYY-MM-DD) or an ISO 8601 time") from None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def default_period(now: datetime, days: int = DEFAULT_DAYS) -> Period:
    """The last `days` calendar days including today (UTC)."""
    today = now.date()
    return Period(
        datetime.combine(today - timedelta(days=days - 1), time()), datetime.combine(today + timedelta(days=1), time())
    )


def parse_period(since: str | None, until: str | None, now: datetime) -> Period:
    """A Period from optional `since`/`until` strings; missing bounds default to the last 90 days.

    Raises `PeriodError` for malformed values, an empty or reversed interval, or years outside 2000–2100.
    """
    default = default_period(now)
    start = _parse_bound(since, "since", end=False) if since and since.strip() else None
    stop = _parse_bound(until, "until", end=True) if until and until.strip() else None
    if start is None and stop is None:
        return default
    if stop is None:
        assert start is not None
        stop = max(default.until, start + timedelta(days=1))
    if start is None:
        start = stop - timedelta(days=DEFAULT_DAYS)
    for value, name in ((start, "since"), (stop, "until")):
        if not 2000 <= value.year <= 2100:
            raise PeriodError(f"{name} must be between the years 2000 and 2100")
    if start >= stop:
        raise PeriodError("since must be before until")
    return Period(start, stop)


def presets(now: datetime) -> list[tuple[str, Period]]:
    """Common periods for one-click links on the dashboard."""
    today = now.date()
    month_start = today.replace(day=1)
    last_month_end = month_start - timedelta(days=1)

    def day(d: date) -> datetime:
        return datetime.combine(d, time())

    tomorrow = day(today + timedelta(days=1))
    return [
        ("Last 30 days", default_period(now, 30)),
        ("Last 90 days", default_period(now, 90)),
        ("This month", Period(day(month_start), tomorrow)),
        ("Last month", Period(day(last_month_end.replace(day=1)), day(month_start))),
        ("Year to date", Period(day(today.replace(month=1, day=1)), tomorrow)),
        ("Last 12 months", default_period(now, 365)),
    ]
