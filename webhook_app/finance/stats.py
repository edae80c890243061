"""SQL helpers for the finance figures that differ by database: percentiles, months, durations.

Percentiles follow PostgreSQL's `percentile_cont` (linear interpolation between the two nearest values:
the median of 1, 2, 3, 10 is 2.5), so SQLite and PostgreSQL give the same answers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Integer, cast, extract, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

FRACTIONS = (0.5, 0.9)  # the median and the 90th percentile


def dialect(session: Session) -> str:
    """`postgresql` or `sqlite`."""
    return session.get_bind().dialect.name


def month_start(column: Any, dialect_name: str) -> ColumnElement[Any]:
    """The first instant of the UTC calendar month of `column` (a timestamp, or `YYYY-MM-01` text on SQLite)."""
    if dialect_name == "postgresql":
        return func.date_trunc("month", column)
    return func.strftime("%Y-%m-01", column)


def as_month(value: Any) -> date:
    """A month bucket from the database (a datetime, a date or `YYYY-MM-01` text) as the month's first day."""
    if isinstance(value, datetime):
        return value.date().replace(day=1)
    if isinstance(value, date):
        return value.replace(day=1)
    return date.fromisoformat(str(value)[:10]).replace(day=1)


def seconds_between(later: Any, earlier: Any, dialect_name: str) -> ColumnElement[Any]:
    """`later - earlier` in seconds, computed by the database."""
    if dialect_name == "postgresql":
        return extract("epoch", later - earlier)
    # Whole seconds, as the ledger's seconds_to_recover (julianday arithmetic is off by microseconds).
    return cast(func.strftime("%s", later), Integer) - cast(func.strftime("%s", earlier), Integer)


def interpolate(values: Sequence[float], fraction: float) -> float | None:
    """`percentile_cont` of sorted `values` (None for none)."""
    if not values:
        return None
    position = fraction * (len(values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(values) - 1)
    return float(values[low] + (values[high] - values[low]) * (position - low))


def percentiles(
    session: Session,
    value: Any,
    where: Sequence[Any],
    groups: Sequence[Any],
    fractions: Sequence[float] = FRACTIONS,
) -> dict[tuple[Any, ...], tuple[float | None, ...]]:
    """Per group (a tuple of the `groups` values), the `fractions` percentiles of `value` over rows matching `where`.

    PostgreSQL: `percentile_cont ... WITHIN GROUP`. SQLite has no percentile function: rows are ranked
    per group with window functions and only the one or two values around each percentile are read.
    """
    labels = [g.label(f"g{i}") for i, g in enumerate(groups)]
    if dialect(session) == "postgresql":
        columns = [func.percentile_cont(p).within_group(value) for p in fractions]
        found = session.execute(select(*labels, *columns).where(*where).group_by(*labels))
        n = len(groups)
        return {tuple(row[:n]): tuple(None if v is None else float(v) for v in row[n:]) for row in found}
    ranked = (
        select(
            *labels,
            value.label("v"),
            func.row_number().over(partition_by=list(groups), order_by=value).label("rn"),
            func.count().over(partition_by=list(groups)).label("n"),
        )
        .where(*where, value.is_not(None))
        .subquery()
    )
    wanted = []
    for p in fractions:
        rank = cast(p * (ranked.c.n - 1), Integer) + 1  # 1-based rank at or just below the percentile
        wanted.append(ranked.c.rn.in_((rank, rank + 1)))
    rows = session.execute(select(ranked).where(or_(*wanted))).all()
    near: dict[tuple[Any, ...], dict[int, float]] = defaultdict(dict)
    counts: dict[tuple[Any, ...], int] = {}
    for row in rows:
        key = tuple(getattr(row, f"g{i}") for i in range(len(groups)))
        near[key][row.rn] = float(row.v)
        counts[key] = row.n
    out: dict[tuple[Any, ...], tuple[float | None, ...]] = {}
    for key, ranks in near.items():
        results: list[float | None] = []
        for p in fractions:
            position = p * (counts[key] - 1)
            low = math.floor(position) + 1
            below, above = ranks[low], ranks.get(low + 1, ranks[low])
            results.append(below + (above - below) * (position - math.floor(position)))
        out[key] = tuple(results)
    return out
