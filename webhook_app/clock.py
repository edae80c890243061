"""Time as a dependency, so tests can drive it (cadence, expiry, backoff)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def utcnow() -> datetime:
    """Naive UTC now: the form every timestamp is stored in."""
    return datetime.now(UTC).replace(tzinfo=None)


def from_unix(seconds: int | float | None) -> datetime | None:
    """A Stripe unix timestamp as naive UTC, or None."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(int(seconds), UTC).replace(tzinfo=None)


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return utcnow()


class FrozenClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime | None = None):
        self.current = start or utcnow()

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> datetime:
        self.current += timedelta(**delta)
        return self.current
