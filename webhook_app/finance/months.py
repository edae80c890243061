"""Two honest views of the recovery rate, by calendar month (UTC), one currency at a time.

- By month of first failure (a cohort): of the cases whose first failed payment fell in month M, how
  many were recovered, lost, or are still open *now*. The rate is over the finished ones only
  (recovered / (recovered + lost)); the open ones are shown apart, because they may still go either
  way. A case failing in May and paid in June counts as a May recovery here.
- By month of recovery: recoveries dated in M (the ledger, by payment time) against cases lost in M.
  The same June payment counts in June here. This is the dashboard's headline rate, month by month.
Time to recover (first failure to payment) is given as the median and the 90th percentile in both.
Whole months are shown: every calendar month the period touches, in full, empty months included.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from webhook_app.finance.period import Period
from webhook_app.finance.queries import Filters, case_where, ledger_where
from webhook_app.finance.stats import as_month, dialect, month_start, percentiles, seconds_between
from webhook_app.models import DunningCase, LedgerEntry
from webhook_app.money import to_decimal
from webhook_app.states import CASE_LOST, CASE_OPEN, CaseStatus, LedgerKind


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def month_span(period: Period) -> tuple[Period, list[date]]:
    """The whole calendar months `period` touches: their span, and each month's first day."""
    first, last = period.since_date.replace(day=1), period.until_date.replace(day=1)
    months, day = [], first
    while day <= last:
        months.append(day)
        day = _next_month(day)
    return Period(datetime.combine(first, datetime.min.time()), datetime.combine(day, datetime.min.time())), months


def _rate(part: int, finished: int) -> float | None:
    return part / finished if finished > 0 else None


@dataclass
class FailureMonth:
    """What became of the cases that first failed in `month` (counts and amounts due, minor units)."""

    month: date
    currency: str
    failed: int = 0
    recovered: int = 0
    lost: int = 0
    still_open: int = 0
    other: int = 0  # closed otherwise: the provider no longer knows the invoice or customer
    failed_amount: int = 0
    recovered_amount: int = 0
    lost_amount: int = 0
    open_amount: int = 0
    median_seconds: float | None = None
    p90_seconds: float | None = None

    @property
    def finished(self) -> int:
        """Cases with an outcome: recovered or lost."""
        return self.recovered + self.lost

    @property
    def rate(self) -> float | None:
        """Recovered / (recovered + lost): open cases are not counted either way."""
        return _rate(self.recovered, self.finished)

    @property
    def amount_rate(self) -> float | None:
        """The same by amount due."""
        return _rate(self.recovered_amount, self.recovered_amount + self.lost_amount)

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON and the report (minor units plus decimal strings)."""
        out: dict[str, Any] = {"month": self.month.strftime("%Y-%m"), "currency": self.currency}
        out.update(failed=self.failed, recovered=self.recovered, lost=self.lost, still_open=self.still_open)
        out["closed_otherwise"] = self.other
        for name in ("failed_amount", "recovered_amount", "lost_amount", "open_amount"):
            value = getattr(self, name)
            out[f"{name}_minor"], out[name] = value, str(to_decimal(value, self.currency))
        out["recovery_rate"] = None if self.rate is None else round(self.rate, 4)
        out["amount_recovery_rate"] = None if self.amount_rate is None else round(self.amount_rate, 4)
        out["median_seconds_to_recover"] = None if self.median_seconds is None else round(self.median_seconds)
        out["p90_seconds_to_recover"] = None if self.p90_seconds is None else round(self.p90_seconds)
        return out


@dataclass
class RecoveryMonth:
    """Recoveries paid in `month` against cases lost in `month` (amounts in minor units)."""

    month: date
    currency: str
    recoveries: int = 0
    recovered_amount: int = 0
    lost: int = 0
    lost_amount: int = 0
    median_seconds: float | None = None
    p90_seconds: float | None = None

    @property
    def rate(self) -> float | None:
        """Recoveries / (recoveries + losses) of the month."""
        return _rate(self.recoveries, self.recoveries + self.lost)

    @property
    def amount_rate(self) -> float | None:
        """The same by amount."""
        return _rate(self.recovered_amount, self.recovered_amount + self.lost_amount)

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON and the report (minor units plus decimal strings)."""
        out: dict[str, Any] = {"month": self.month.strftime("%Y-%m"), "currency": self.currency}
        out.update(recoveries=self.recoveries, lost=self.lost)
        for name in ("recovered_amount", "lost_amount"):
            value = getattr(self, name)
            out[f"{name}_minor"], out[name] = value, str(to_decimal(value, self.currency))
        out["recovery_rate"] = None if self.rate is None else round(self.rate, 4)
        out["amount_recovery_rate"] = None if self.amount_rate is None else round(self.amount_rate, 4)
        out["median_seconds_to_recover"] = None if self.median_seconds is None else round(self.median_seconds)
        out["p90_seconds_to_recover"] = None if self.p90_seconds is None else round(self.p90_seconds)
        return out


def by_failure_month(session: Session, f: Filters) -> dict[str, list[FailureMonth]]:
    """Per currency, every whole month the period touches: the fate of the cases first failing in it."""
    span, months = month_span(f.period)
    month = month_start(DunningCase.first_failed_at, dialect(session)).label("month")
    where = [DunningCase.first_failed_at >= span.since, DunningCase.first_failed_at < span.until, *case_where(f)]
    cells: dict[str, dict[date, FailureMonth]] = defaultdict(dict)

    def cell(currency: str, bucket: Any) -> FailureMonth:
        day = as_month(bucket)
        return cells[currency].setdefault(day, FailureMonth(day, currency))

    rows = session.execute(
        select(DunningCase.currency, month, DunningCase.status, func.count(), func.sum(DunningCase.amount_due))
        .where(*where)
        .group_by(DunningCase.currency, month, DunningCase.status)
    )
    for currency, bucket, status, count, total in rows:
        c, amount = cell(currency, bucket), int(total or 0)
        c.failed += count
        c.failed_amount += amount
        if status == CaseStatus.RECOVERED:
            c.recovered, c.recovered_amount = c.recovered + count, c.recovered_amount + amount
        elif status in CASE_LOST:
            c.lost, c.lost_amount = c.lost + count, c.lost_amount + amount
        elif status in CASE_OPEN:
            c.still_open, c.open_amount = c.still_open + count, c.open_amount + amount
        else:
            c.other += count
    took = seconds_between(DunningCase.paid_at, DunningCase.first_failed_at, dialect(session))
    recovered = [*where, DunningCase.status == CaseStatus.RECOVERED, DunningCase.paid_at.is_not(None)]
    for (currency, bucket), (median, p90) in percentiles(
        session, took, recovered, [DunningCase.currency, month]
    ).items():
        c = cell(currency, bucket)
        c.median_seconds, c.p90_seconds = median, p90
    return {
        currency: [found.get(m) or FailureMonth(m, currency) for m in months]
        for currency, found in sorted(cells.items())
    }


def by_recovery_month(session: Session, f: Filters) -> dict[str, list[RecoveryMonth]]:
    """Per currency, every whole month the period touches: its recoveries against its losses."""
    span, months = month_span(f.period)
    whole = replace(f, period=span)
    kind = dialect(session)
    cells: dict[str, dict[date, RecoveryMonth]] = defaultdict(dict)

    def cell(currency: str, bucket: Any) -> RecoveryMonth:
        day = as_month(bucket)
        return cells[currency].setdefault(day, RecoveryMonth(day, currency))

    paid_month = month_start(LedgerEntry.recovered_at, kind).label("month")
    recoveries = [*ledger_where(whole), LedgerEntry.kind == LedgerKind.RECOVERY]
    rows = session.execute(
        select(LedgerEntry.currency, paid_month, func.count(), func.sum(LedgerEntry.amount))
        .where(*recoveries)
        .group_by(LedgerEntry.currency, paid_month)
    )
    for currency, bucket, count, amount in rows:
        c = cell(currency, bucket)
        c.recoveries, c.recovered_amount = count, int(amount or 0)
    lost_month = month_start(DunningCase.closed_at, kind).label("month")
    rows = session.execute(
        select(DunningCase.currency, lost_month, func.count(), func.sum(DunningCase.amount_due))
        .where(
            DunningCase.status.in_(tuple(CASE_LOST)),
            DunningCase.closed_at >= span.since,
            DunningCase.closed_at < span.until,
            *case_where(f),
        )
        .group_by(DunningCase.currency, lost_month)
    )
    for currency, bucket, count, amount in rows:
        c = cell(currency, bucket)
        c.lost, c.lost_amount = count, int(amount or 0)
    timed = [*recoveries, LedgerEntry.seconds_to_recover.is_not(None)]
    groups = [LedgerEntry.currency, paid_month]
    for (currency, bucket), (median, p90) in percentiles(
        session, LedgerEntry.seconds_to_recover, timed, groups
    ).items():
        c = cell(currency, bucket)
        c.median_seconds, c.p90_seconds = median, p90
    return {
        currency: [found.get(m) or RecoveryMonth(m, currency) for m in months]
        for currency, found in sorted(cells.items())
    }
