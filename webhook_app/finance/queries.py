"""The finance figures, computed in the database, one currency at a time.

Money in different currencies is never added together: every figure is grouped by currency and every
amount stays an integer in minor units until it is displayed (`invoices.format_amount`).
Definitions (shown on the dashboard too), for a period `[since, until)` in UTC:
- recovered (gross): recovery rows of the ledger dated in the period (`recovered_at` = payment time);
- corrections: refund / credit-note rows dated in the period (negative), whatever month the recovery was
  in, so a closed month's figures never change; recovered (net) = gross + corrections;
- lost: cases closed as void / uncollectible / canceled in the period, at their amount due;
- open at period end / at risk: cases that had failed and were not yet settled at `until`;
- recovery rate: recoveries / (recoveries + lost cases) settled in the period (and the same by amount);
- time to recover: from the first failed payment to the payment, over the period's recoveries, as the
  median and the 90th percentile;
- attribution: the period's recoveries by link click / Stripe retry / out of band.
For periods of whole UTC days (every preset, every date the forms send) the ledger's figures are read
from its daily roll-ups (`webhook_app.rollups`), which hold the same sums per day; a period with an
exact instant reads the ledger itself, through the (recovered_at, currency) and (currency,
recovered_at) indexes. Either way the figures are the same (tests/integration/test_finance_rollups.py).
Lists of cases (at risk now, lost) are in `lists`, the two month views in `months`, settled money in
the payout currency in `settled`.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, and_, case, func, or_, select, text
from sqlalchemy.orm import Session

from webhook_app.finance.cursor import SORTS, Cursor
from webhook_app.finance.durations import RollupMismatch, rolled_up_percentiles
from webhook_app.finance.paging import Page, after, keyset
from webhook_app.finance.period import Period, iso
from webhook_app.finance.stats import percentiles
from webhook_app.models import DunningCase, LedgerDaily, LedgerEntry
from webhook_app.money import format_amount, to_decimal
from webhook_app.providers import DashboardLink
from webhook_app.states import CASE_LOST, CASE_OPEN, CASE_SETTLED
from webhook_app.states import Attribution as Cause

log = logging.getLogger(__name__)
ATTRIBUTIONS = tuple(Cause)
ATTRIBUTION_LABELS = {
    Cause.LINK_CLICK: "Recovery link",
    Cause.PROVIDER_RETRY: "Provider retry",
    Cause.OUT_OF_BAND: "Out of band",
}
LOST_STATUSES = tuple(CASE_LOST)
OPEN_STATUSES = tuple(CASE_OPEN)
# A case closed after `until` was still open at `until`, whatever it became later.
SETTLED_STATUSES = tuple(CASE_SETTLED)
CURRENCY = re.compile(r"^[a-z]{3}$")
MAX_PAGE_SIZE = 500


class FilterError(ValueError):
    """A filter parameter is malformed; the message is safe to show."""


@dataclass(frozen=True)
class Filters:
    """What every finance query is restricted to: a period, optionally one currency, mode and provider."""

    period: Period
    currency: str | None = None
    livemode: bool | None = None
    provider: str | None = None

    def scope(self, model: Any) -> list[Any]:
        """WHERE clauses keeping rows of `model` (a table with `currency`, `livemode` and `provider`
        columns) to these filters' currency, mode and provider; none for a filter that is not set."""
        clauses = []
        if self.currency:
            clauses.append(model.currency == self.currency)
        if self.livemode is not None:
            clauses.append(model.livemode == self.livemode)
        if self.provider:
            clauses.append(model.provider == self.provider)
        return clauses

    def days(self, model: Any) -> list[Any]:
        """WHERE clauses for a daily roll-up table `model` (a `day` column): the period's days and `scope`
        (whole-day periods only)."""
        return [model.day >= self.period.since.date(), model.day < self.period.until.date(), *self.scope(model)]

    def query_args(self) -> dict[str, Any]:
        """The filters as URL query parameters (for links that keep them)."""
        args = {"since": self.period.since_date.isoformat(), "until": self.period.until_date.isoformat()}
        if self.currency:
            args["currency"] = self.currency
        if self.livemode is not None:
            args["mode"] = "live" if self.livemode else "test"
        if self.provider:
            args["provider"] = self.provider
        return args


def parse_currency(raw: str | None) -> str | None:
    """A lowercase ISO currency code, or None for all currencies."""
    if raw is None or not raw.strip() or raw.strip().lower() == "all":
        return None
    value = raw.strip().lower()
    if not CURRENCY.match(value):
        raise FilterError("currency must be a three-letter ISO code such as usd or jpy")
    return value


def parse_provider(raw: str | None, known: Iterable[str]) -> str | None:
    """One billing provider's name, or None for all of them."""
    value = (raw or "all").strip().lower()
    if value == "all":
        return None
    names = tuple(known)
    if value not in names:
        raise FilterError(f"provider must be one of {', '.join(names)} or all")
    return value


def parse_mode(raw: str | None) -> bool | None:
    """`live` / `test` as a livemode flag; None (both) when absent or `all`."""
    value = (raw or "all").strip().lower()
    if value not in ("all", "live", "test"):
        raise FilterError("mode must be live, test or all")
    return None if value == "all" else value == "live"


# -- summary ---------------------------------------------------------------------------------------
@dataclass
class Attribution:
    """Recoveries credited to one cause."""

    count: int = 0
    amount: int = 0


@dataclass
class CurrencySummary:
    """Every dashboard figure for one currency (amounts in minor units)."""

    currency: str
    recovered_gross: int = 0
    recoveries: int = 0
    corrections: int = 0
    correction_count: int = 0
    lost_amount: int = 0
    lost_cases: int = 0
    lost_by_status: dict[str, int] = field(default_factory=dict)
    open_cases: int = 0
    at_risk: int = 0
    median_seconds: float | None = None
    p90_seconds: float | None = None
    attribution: dict[str, Attribution] = field(default_factory=lambda: {a: Attribution() for a in ATTRIBUTIONS})

    @property
    def recovered_net(self) -> int:
        """Recovered money minus refunds and credit notes issued in the period."""
        return self.recovered_gross + self.corrections

    @property
    def recovery_rate(self) -> float | None:
        """Recovered cases / (recovered + lost) cases settled in the period; None when none settled."""
        settled = self.recoveries + self.lost_cases
        return self.recoveries / settled if settled else None

    @property
    def amount_recovery_rate(self) -> float | None:
        """The same ratio by amount."""
        settled = self.recovered_gross + self.lost_amount
        return self.recovered_gross / settled if settled > 0 else None

    def money(self, amount: int) -> str:
        """An amount of this currency for humans."""
        return format_amount(amount, self.currency)

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON / CSV: minor units plus decimal strings, rates as fractions."""

        def pair(name: str, amount: int) -> dict[str, Any]:
            return {f"{name}_minor": amount, name: str(to_decimal(amount, self.currency))}

        out: dict[str, Any] = {"currency": self.currency}
        out.update(pair("recovered_net", self.recovered_net))
        out.update(pair("recovered_gross", self.recovered_gross))
        out.update(pair("corrections", self.corrections))
        out.update({"recoveries": self.recoveries, "corrections_count": self.correction_count})
        out.update({"open_cases": self.open_cases, **pair("at_risk", self.at_risk)})
        out.update({"lost_cases": self.lost_cases, **pair("lost", self.lost_amount)})
        out["recovery_rate"] = None if self.recovery_rate is None else round(self.recovery_rate, 4)
        out["amount_recovery_rate"] = None if self.amount_recovery_rate is None else round(self.amount_recovery_rate, 4)
        out["median_seconds_to_recover"] = None if self.median_seconds is None else round(self.median_seconds)
        out["p90_seconds_to_recover"] = None if self.p90_seconds is None else round(self.p90_seconds)
        for name in ATTRIBUTIONS:
            out[f"{name}_count"] = self.attribution[name].count
            out.update(pair(f"{name}_amount", self.attribution[name].amount))
        return out


def ledger_where(f: Filters) -> list[Any]:
    """Ledger rows dated in the period, in the filters' currency, mode and provider."""
    return [
        LedgerEntry.recovered_at >= f.period.since,
        LedgerEntry.recovered_at < f.period.until,
        *f.scope(LedgerEntry),
    ]


def whole_days(period: Period) -> bool:
    """Whether the period starts and ends at UTC midnight (so the daily roll-ups answer for it)."""
    return period.since.time() == time() and period.until.time() == time()


def rollup_where(f: Filters) -> list[Any]:
    """Roll-up rows of the period's days, in the filters' currency, mode and provider (whole days only)."""
    return f.days(LedgerDaily)


def case_where(f: Filters) -> list[Any]:
    """Cases of the filters' currency, mode and provider (any time)."""
    return f.scope(DunningCase)


@dataclass(frozen=True)
class LedgerGroup:
    """The period's ledger rows sharing a currency, kind, attribution and settlement: counts and sums."""

    currency: str
    kind: str
    attribution: str | None
    settlement_status: str | None
    settled_currency: str | None
    count: int
    amount: int
    settled_amount: int
    settled_fee: int
    settled_net: int


def _or_none(value: str | None) -> str | None:
    return value or None  # a roll-up's '' is the ledger's NULL


def ledger_groups(session: Session, f: Filters) -> list[LedgerGroup]:
    """One scan of the period's ledger rows (or its daily roll-ups), grouped for the summary and settled totals."""
    if whole_days(f.period):
        return _rolled_up_groups(session, f)
    keys = (
        LedgerEntry.currency,
        LedgerEntry.kind,
        LedgerEntry.attribution,
        LedgerEntry.settlement_status,
        LedgerEntry.settled_currency,
    )
    rows = session.execute(
        select(
            *keys,
            func.count(),
            func.sum(LedgerEntry.amount),
            func.sum(LedgerEntry.settled_amount),
            func.sum(LedgerEntry.settled_fee),
            func.sum(LedgerEntry.settled_net),
        )
        .where(*ledger_where(f))
        .group_by(*keys)
    )
    return [
        LedgerGroup(cur, kind, cause, status, payout, count, int(a or 0), int(sa or 0), int(fee or 0), int(net or 0))
        for cur, kind, cause, status, payout, count, a, sa, fee, net in rows
    ]


def _rolled_up_groups(session: Session, f: Filters) -> list[LedgerGroup]:
    keys = (
        LedgerDaily.currency,
        LedgerDaily.kind,
        LedgerDaily.attribution,
        LedgerDaily.settlement_status,
        LedgerDaily.settled_currency,
    )
    entries = func.sum(LedgerDaily.entries)
    rows = session.execute(
        select(
            *keys,
            entries,
            func.sum(LedgerDaily.amount),
            func.sum(LedgerDaily.settled_amount),
            func.sum(LedgerDaily.settled_fee),
            func.sum(LedgerDaily.settled_net),
        )
        .where(*rollup_where(f))
        .group_by(*keys)
        .having(entries != 0)  # a group every row has left (pending -> settled) is no group
    )
    return [
        LedgerGroup(
            cur,
            kind,
            _or_none(cause),
            _or_none(status),
            _or_none(payout),
            int(count),
            int(a or 0),
            int(sa or 0),
            int(fee or 0),
            int(net or 0),
        )
        for cur, kind, cause, status, payout, count, a, sa, fee, net in rows
    ]


@dataclass(frozen=True)
class LostGroup:
    """Cases of one currency closed as lost in the period with one status and decline class, in one week."""

    currency: str
    status: str
    decline_class: str | None
    week: date  # the Monday starting the week of closed_at (UTC)
    count: int
    amount: int  # amounts due, minor units


def lost_groups(session: Session, f: Filters) -> list[LostGroup]:
    """One scan of the cases lost in the period, grouped for the summary, the weekly series and the decline table."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        # A year of lost cases is ~100,000 rows in a few hundred groups, but PostgreSQL cannot estimate the
        # groups of an expression and, within the default 4 MB, sorts on disk (570 ms on 1,000,000 ledger
        # rows) where a hash takes 117 ms. For this read transaction only.
        session.execute(text("SET LOCAL work_mem = '32MB'"))
    week_col = _week_start(DunningCase.closed_at, dialect).label("week")
    keys = (DunningCase.currency, DunningCase.status, DunningCase.decline_class, week_col)
    rows = session.execute(
        select(*keys, func.count(), func.sum(DunningCase.amount_due))
        .where(
            DunningCase.status.in_(LOST_STATUSES),
            DunningCase.closed_at >= f.period.since,
            DunningCase.closed_at < f.period.until,
            *case_where(f),
        )
        .group_by(*keys)
    )
    return [
        LostGroup(currency, status, decline_class, _as_date(week), int(count), int(amount or 0))
        for currency, status, decline_class, week, count, amount in rows
    ]


def summarize(
    session: Session, f: Filters, groups: list[LedgerGroup] | None = None, lost: list[LostGroup] | None = None
) -> list[CurrencySummary]:
    """The period's figures, one `CurrencySummary` per currency with any activity, by currency code.

    `groups`, `lost`: the period's `ledger_groups` and `lost_groups` when the caller has them already
    (one scan of each for the whole dashboard).
    """
    by_currency: dict[str, CurrencySummary] = {}

    def get(currency: str) -> CurrencySummary:
        return by_currency.setdefault(currency, CurrencySummary(currency))

    for group in ledger_groups(session, f) if groups is None else groups:
        currency, kind, attribution, count = group.currency, group.kind, group.attribution, group.count
        s, amount = get(currency), group.amount
        if kind == "recovery":
            s.recoveries += count
            s.recovered_gross += amount
            if attribution in s.attribution:
                s.attribution[attribution].count += count
                s.attribution[attribution].amount += amount
        else:
            s.correction_count += count
            s.corrections += amount

    for closed in lost_groups(session, f) if lost is None else lost:
        s = get(closed.currency)
        s.lost_cases += closed.count
        s.lost_amount += closed.amount
        s.lost_by_status[closed.status] = s.lost_by_status.get(closed.status, 0) + closed.count

    end = f.period.until
    still_open = session.execute(
        select(DunningCase.currency, func.count(), func.sum(DunningCase.amount_due))
        .where(
            DunningCase.first_failed_at < end,
            or_(
                DunningCase.status.in_(OPEN_STATUSES),
                and_(DunningCase.status.in_(SETTLED_STATUSES), DunningCase.closed_at >= end),
            ),
            *case_where(f),
        )
        .group_by(DunningCase.currency)
    )
    for currency, count, amount in still_open:
        s = get(currency)
        s.open_cases, s.at_risk = count, int(amount or 0)

    for currency, (median, p90) in recovery_times(session, f).items():
        get(currency).median_seconds, get(currency).p90_seconds = median, p90
    return [by_currency[c] for c in sorted(by_currency)]


def recovery_times(session: Session, f: Filters) -> dict[str, tuple[float | None, float | None]]:
    """(median, 90th percentile) seconds from first failure to payment, per currency, over the period's recoveries."""
    if whole_days(f.period):
        try:
            return {c: (v[0], v[1]) for c, v in rolled_up_percentiles(session, f).items()}
        except RollupMismatch as exc:  # still right, only slower, until someone rebuilds the roll-ups
            log.warning("time to recover read from the ledger: %s; run webhook-app finance rebuild-rollups", exc)
    where = [*ledger_where(f), LedgerEntry.kind == "recovery", LedgerEntry.seconds_to_recover.is_not(None)]
    found = percentiles(session, LedgerEntry.seconds_to_recover, where, [LedgerEntry.currency])
    return {key[0]: (values[0], values[1]) for key, values in found.items()}


# -- weekly series -----------------------------------------------------------------------------------
@dataclass
class Week:
    """One week (Monday to Sunday, UTC) of one currency: money recovered, given back, lost."""

    start: date
    recovered: int = 0
    corrections: int = 0
    lost: int = 0


def _week_start(column: Any, dialect: str) -> Any:
    if dialect == "postgresql":
        return func.date_trunc("week", column)  # ISO weeks: Monday
    return func.date(column, "weekday 0", "-6 days")  # the Sunday on or after, minus six days


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def monday(day: date) -> date:
    """The Monday starting `day`'s week."""
    return day - timedelta(days=day.weekday())


def weekly(session: Session, f: Filters, lost: list[LostGroup] | None = None) -> dict[str, list[Week]]:
    """Per currency, every week touching the period (empty weeks included, so the chart is honest).

    `lost`: the period's `lost_groups` when the caller has them already.
    """
    dialect = session.get_bind().dialect.name
    series: dict[str, dict[date, Week]] = defaultdict(dict)

    def week(currency: str, start: Any) -> Week:
        day = _as_date(start)
        return series[currency].setdefault(day, Week(day))

    if whole_days(f.period):
        # Per day from the roll-ups, folded into weeks here (at most a few hundred rows per currency).
        is_recovery = LedgerDaily.kind == "recovery"
        ledger = session.execute(
            select(
                LedgerDaily.currency,
                LedgerDaily.day,
                func.sum(case((is_recovery, LedgerDaily.amount), else_=0)),
                func.sum(case((is_recovery, 0), else_=LedgerDaily.amount)),
            )
            .where(*rollup_where(f))
            .group_by(LedgerDaily.currency, LedgerDaily.day)
            .having(func.sum(LedgerDaily.entries) != 0)
        )
        rows = [(currency, monday(_as_date(day)), r, c) for currency, day, r, c in ledger]
    else:
        week_col = _week_start(LedgerEntry.recovered_at, dialect).label("week")
        is_entry_recovery = LedgerEntry.kind == "recovery"
        ledger = session.execute(
            select(
                LedgerEntry.currency,
                week_col,
                func.sum(case((is_entry_recovery, LedgerEntry.amount), else_=0)),
                func.sum(case((is_entry_recovery, 0), else_=LedgerEntry.amount)),
            )
            .where(*ledger_where(f))
            .group_by(LedgerEntry.currency, week_col)
        )
        rows = [(currency, start, r, c) for currency, start, r, c in ledger]
    for currency, start, recovered, corrections in rows:
        w = week(currency, start)
        w.recovered += int(recovered or 0)
        w.corrections += int(corrections or 0)

    for group in lost_groups(session, f) if lost is None else lost:
        week(group.currency, group.week).lost += group.amount

    first, last = monday(f.period.since_date), monday(f.period.until_date)
    out = {}
    for currency, weeks in series.items():
        day, filled = first, []
        while day <= last:
            filled.append(weeks.get(day) or Week(day))
            day += timedelta(days=7)
        out[currency] = filled
    return dict(sorted(out.items()))


# -- ledger rows -----------------------------------------------------------------------------------
ROW_COLUMNS = (
    LedgerEntry.id,
    LedgerEntry.provider,
    LedgerEntry.entry_key,
    LedgerEntry.kind,
    LedgerEntry.invoice_id,
    LedgerEntry.customer_id,
    LedgerEntry.amount,
    LedgerEntry.currency,
    LedgerEntry.livemode,
    LedgerEntry.recovered_at,
    LedgerEntry.first_failed_at,
    LedgerEntry.seconds_to_recover,
    LedgerEntry.attribution,
    LedgerEntry.invoice_number,
    LedgerEntry.customer_name,
    LedgerEntry.customer_email,
    LedgerEntry.settlement_status,
    LedgerEntry.settlement_id,
    LedgerEntry.settled_amount,
    LedgerEntry.settled_fee,
    LedgerEntry.settled_net,
    LedgerEntry.settled_currency,
    LedgerEntry.settled_exchange_rate,
)


def _settled_decimal(amount: int | None, currency: str | None) -> str | None:
    return None if amount is None or currency is None else str(to_decimal(amount, currency))


def row_dict(row: Any, dashboard: DashboardLink) -> dict[str, Any]:
    """One ledger row for JSON and CSV: minor units plus a decimal string, ISO 8601 UTC times.

    `settled_*` are the recovery's balance transaction in the payout currency (`settled_currency`),
    null until looked up and for corrections; `settlement_status` says which (see `SettlementStatus`).
    """
    settled = row.settled_currency
    return {
        "provider": row.provider,
        "entry_key": row.entry_key,
        "kind": row.kind,
        "invoice_id": row.invoice_id,
        "invoice_number": row.invoice_number,
        "customer_id": row.customer_id,
        "customer_name": row.customer_name,
        "customer_email": row.customer_email,
        "currency": row.currency,
        "amount_minor": row.amount,
        "amount": str(to_decimal(row.amount, row.currency)),
        "recovered_at": iso(row.recovered_at),
        "first_failed_at": iso(row.first_failed_at),
        "seconds_to_recover": row.seconds_to_recover,
        "attribution": row.attribution,
        "livemode": bool(row.livemode),
        "settlement_status": row.settlement_status,
        "settled_currency": settled,
        "settled_amount_minor": row.settled_amount,
        "settled_amount": _settled_decimal(row.settled_amount, settled),
        "settled_fee_minor": row.settled_fee,
        "settled_fee": _settled_decimal(row.settled_fee, settled),
        "settled_net_minor": row.settled_net,
        "settled_net": _settled_decimal(row.settled_net, settled),
        "exchange_rate": row.settled_exchange_rate,
        "balance_transaction": row.settlement_id,
        "invoice_url": dashboard(row.provider, "invoice", row.invoice_id, row.livemode),
        "customer_url": dashboard(row.provider, "customer", row.customer_id, row.livemode),
    }


def rows_query(f: Filters) -> Select[*tuple[Any, ...]]:
    """The period's ledger rows (no order, no limit)."""
    return select(*ROW_COLUMNS).where(*ledger_where(f))


def narrowed(f: Filters, at: datetime, *, before: bool) -> Filters:
    """`f` with its period cut at a keyset position, so the index range starts (or ends) there.

    A second bound on `recovered_at` next to the period's would leave the database free to range-scan from
    the period's start (SQLite does), making each later page slower than the one before.
    """
    p = f.period
    period = (
        Period(p.since, min(p.until, at + timedelta(microseconds=1))) if before else Period(max(p.since, at), p.until)
    )
    return replace(f, period=period)


def after_key(column: Any, key: Any, row_id: int, *, before: bool) -> Any:
    """Ledger rows strictly after (or before) `(key, row_id)` in `(column, id)` order."""
    return after(column, LedgerEntry.id, key, row_id, before=before)


def page(session: Session, f: Filters, sort: str, cursor: Cursor | None = None, limit: int = 50) -> Page:
    """A page of ledger rows in `sort` order, after (or before) `cursor` (keyset pagination)."""
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    if cursor is not None:
        sort = cursor.sort
    kind, descending = SORTS[sort]
    if cursor is not None and kind == "date":
        forward = cursor.forward
        f = narrowed(f, cursor.key, before=descending == forward)  # type: ignore[arg-type]
    return keyset(
        session,
        rows_query(f),
        sorts=SORTS,
        sort=sort,
        columns={"date": LedgerEntry.recovered_at, "amount": LedgerEntry.amount},
        id_column=LedgerEntry.id,
        key_of=lambda row: row.recovered_at if kind == "date" else row.amount,
        cursor=cursor,
        limit=limit,
    )


def currencies_in(summaries: Iterable[CurrencySummary], extra: str | None = None) -> list[str]:
    """Currency codes to offer in the filter (those with activity, plus the selected one)."""
    codes = {s.currency for s in summaries}
    if extra:
        codes.add(extra)
    return sorted(codes)
