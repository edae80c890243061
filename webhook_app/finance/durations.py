"""Exact time-to-recover percentiles for whole days, without sorting the period's recoveries.

Percentiles do not add up across days, so the roll-up `recovery_durations_daily` keeps each day's
recoveries counted by duration bucket (~10 % wide). Summing the period's days gives how many
recoveries each bucket holds; the rank a percentile needs falls in one bucket, and the value at that
rank is read from the ledger within the bucket only (`ix_recovery_ledger_durations`: currency and
seconds, then the period), a few thousand index entries instead of every recovery of the year.
Same interpolation as PostgreSQL's `percentile_cont` (and `stats.percentiles`), so the same figures.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from webhook_app.finance.stats import FRACTIONS
from webhook_app.models import LedgerEntry, RecoveryDurationDaily
from webhook_app.rollups import bucket_bounds
from webhook_app.states import LedgerKind


class RollupMismatch(RuntimeError):
    """The duration roll-up counts rows the ledger does not have: it needs `webhook-app finance rebuild-rollups`."""


if TYPE_CHECKING:
    from webhook_app.finance.queries import Filters


def _histograms(session: Session, f: Filters) -> dict[str, list[tuple[int, int]]]:
    """Per currency, (bucket, recoveries) over the period's days, buckets in order, empty ones left out."""
    d = RecoveryDurationDaily
    where = f.days(d)
    found: dict[str, list[tuple[int, int]]] = defaultdict(list)
    rows = session.execute(
        select(d.currency, d.bucket, func.sum(d.recoveries))
        .where(*where)
        .group_by(d.currency, d.bucket)
        .order_by(d.currency, d.bucket)
    )
    for currency, bucket, count in rows:
        if count:
            found[currency].append((int(bucket), int(count)))
    return found


def _values_in_bucket(
    session: Session, f: Filters, currency: str, bucket: int, first: int, count: int, size: int
) -> list[int]:
    """The period's recovery durations in `bucket` (`size` of them), in order, from position `first` (0-based),
    `count` of them. Read from whichever end of the bucket is nearer, so at most half of it is skipped."""
    low, high = bucket_bounds(bucket)
    seconds = LedgerEntry.seconds_to_recover
    where: list[Any] = [
        LedgerEntry.kind == LedgerKind.RECOVERY,
        LedgerEntry.recovered_at >= f.period.since,
        LedgerEntry.recovered_at < f.period.until,
        *replace(f, currency=currency).scope(LedgerEntry),
        seconds >= low,
    ]
    if high is not None:
        where.append(seconds < high)
    from_top = size - (first + count)  # values to skip when reading from the largest down
    if from_top < first:
        query = select(seconds).where(*where).order_by(seconds.desc()).offset(from_top).limit(count)
        return [int(v) for v in session.scalars(query) if v is not None][::-1]
    query = select(seconds).where(*where).order_by(seconds).offset(first).limit(count)
    return [int(v) for v in session.scalars(query) if v is not None]


def _at_ranks(
    session: Session, f: Filters, currency: str, buckets: list[tuple[int, int]], ranks: set[int]
) -> dict[int, int]:
    """The durations at these 0-based ranks of the period's recoveries in `currency` (one query per bucket)."""
    wanted: dict[int, list[tuple[int, int]]] = defaultdict(list)  # bucket -> (rank, position in bucket)
    sizes = dict(buckets)
    start = 0
    for bucket, count in buckets:
        for rank in ranks:
            if start <= rank < start + count:
                wanted[bucket].append((rank, rank - start))
        start += count
    values: dict[int, int] = {}
    for bucket, places in wanted.items():
        first = min(p for _, p in places)
        count = max(p for _, p in places) - first + 1
        found = _values_in_bucket(session, f, currency, bucket, first, count, sizes[bucket])
        for rank, place in places:
            if place - first >= len(found):
                raise RollupMismatch(f"recovery_durations_daily counts more {currency} recoveries than the ledger has")
            values[rank] = found[place - first]
    return values


def rolled_up_percentiles(
    session: Session, f: Filters, fractions: Sequence[float] = FRACTIONS
) -> dict[str, tuple[float | None, ...]]:
    """Per currency with any timed recovery in the period: the `fractions` percentiles of its durations."""
    out: dict[str, tuple[float | None, ...]] = {}
    for currency, buckets in _histograms(session, f).items():
        total = sum(count for _, count in buckets)
        positions = [p * (total - 1) for p in fractions]
        ranks = {math.floor(x) for x in positions} | {min(math.floor(x) + 1, total - 1) for x in positions}
        values = _at_ranks(session, f, currency, buckets, ranks)
        results: list[float | None] = []
        for position in positions:
            low = math.floor(position)
            below, above = values[low], values[min(low + 1, total - 1)]
            results.append(float(below + (above - below) * (position - low)))
        out[currency] = tuple(results)
    return out
