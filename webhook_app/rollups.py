"""Daily roll-ups of the recovery ledger: written with every ledger row, rebuilt from the ledger on demand.

`recovery_ledger_daily` sums the ledger per UTC day and every dimension finance filters or groups by
(provider, currency, mode, kind, attribution, decline class, settlement); `recovery_durations_daily`
counts each day's recoveries by how long they took, in coarse buckets. The finance dashboard reads
them for periods of whole days, so a year's figures cost a few thousand rows, not half a million.

`webhook_app.ledger` calls `add_entry` / `add_duration` in the transaction that writes (or settles) a
ledger row, so the roll-ups never disagree with a committed ledger. `rebuild` recomputes both tables
from the ledger (`webhook-app finance rebuild-rollups`): after a restore, a manual fix, or a bulk load.
The SQL of `rebuild` is repeated in the `roll1` migration, which backfills the tables it creates.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from webhook_app.models import DunningCase, LedgerDaily, LedgerEntry, RecoveryDurationDaily
from webhook_app.sql import add_to
from webhook_app.states import LedgerKind

# Bucket i holds seconds in [DURATION_EDGES[i], DURATION_EDGES[i + 1]); the last is open-ended. About 10 %
# wide: small enough that the exact percentile is read from a few thousand ledger rows of one bucket.
# The `roll1` migration spells the same edges: change both (and rebuild) or neither.
DURATION_EDGES: tuple[int, ...] = tuple(sorted({0, *(int(1.1**i) for i in range(210))}))
NONE = ""  # a NULL dimension of the ledger, in a roll-up's primary key
UNKNOWN_CLASS = "unknown"  # a case whose decline was never read (finance shows it as `unknown`)

LEDGER_KEYS = [
    "day",
    "provider",
    "currency",
    "livemode",
    "kind",
    "attribution",
    "decline_class",
    "settlement_status",
    "settled_currency",
]
LEDGER_COUNTERS = ["entries", "amount", "settled_amount", "settled_fee", "settled_net"]
DURATION_KEYS = ["day", "provider", "currency", "livemode", "bucket"]


def bucket_of(seconds: int) -> int:
    """The duration bucket holding `seconds`."""
    return max(0, bisect.bisect_right(DURATION_EDGES, seconds) - 1)


def bucket_bounds(bucket: int) -> tuple[int, int | None]:
    """`[low, high)` seconds of a bucket; high is None for the last one."""
    high = DURATION_EDGES[bucket + 1] if bucket + 1 < len(DURATION_EDGES) else None
    return DURATION_EDGES[bucket], high


def day_of(at: datetime) -> date:
    """The UTC day a ledger row counts in (its `recovered_at`)."""
    return at.date()


@dataclass(frozen=True)
class EntryKey:
    """A ledger row's roll-up dimensions (NULLs spelled as `NONE`)."""

    day: date
    provider: str
    currency: str
    livemode: bool
    kind: str
    attribution: str | None
    decline_class: str | None  # the case's; None for a row without a case
    settlement_status: str | None
    settled_currency: str | None = None

    def values(self) -> dict[str, Any]:
        """The primary-key columns of `recovery_ledger_daily`."""
        return {
            "day": self.day,
            "provider": self.provider,
            "currency": self.currency,
            "livemode": bool(self.livemode),
            "kind": self.kind,
            "attribution": self.attribution or NONE,
            "decline_class": NONE if self.decline_class is None else self.decline_class or UNKNOWN_CLASS,
            "settlement_status": self.settlement_status or NONE,
            "settled_currency": self.settled_currency or NONE,
        }


def add_entry(
    conn: Connection | Session,
    key: EntryKey,
    *,
    entries: int,
    amount: int,
    settled_amount: int = 0,
    settled_fee: int = 0,
    settled_net: int = 0,
) -> None:
    """Add to the day's roll-up row for `key` (negative to take a row out of a group)."""
    values = key.values()
    values.update(
        entries=entries, amount=amount, settled_amount=settled_amount, settled_fee=settled_fee, settled_net=settled_net
    )
    add_to(conn, LedgerDaily.__table__, values, LEDGER_KEYS, LEDGER_COUNTERS)


def add_duration(
    conn: Connection | Session, *, day: date, provider: str, currency: str, livemode: bool, seconds: int | None
) -> None:
    """Count one recovery in its day's duration bucket (nothing when its duration is unknown)."""
    if seconds is None:
        return
    values = {
        "day": day,
        "provider": provider,
        "currency": currency,
        "livemode": bool(livemode),
        "bucket": bucket_of(seconds),
        "recoveries": 1,
    }
    add_to(conn, RecoveryDurationDaily.__table__, values, DURATION_KEYS, ["recoveries"])


def roll_up(conn: Connection | Session, row: Mapping[str, Any], decline_class: str | None) -> None:
    """Add a new ledger row (its column values) to the daily roll-ups, in the transaction of its insert."""
    day = day_of(row["recovered_at"])
    key = EntryKey(
        day,
        row["provider"],
        row["currency"],
        row["livemode"],
        row["kind"],
        row["attribution"],
        decline_class,
        row["settlement_status"],
        row.get("settled_currency"),
    )
    add_entry(
        conn,
        key,
        entries=1,
        amount=row["amount"],
        settled_amount=row.get("settled_amount") or 0,
        settled_fee=row.get("settled_fee") or 0,
        settled_net=row.get("settled_net") or 0,
    )
    if row["kind"] == LedgerKind.RECOVERY:
        add_duration(
            conn,
            day=day,
            provider=row["provider"],
            currency=row["currency"],
            livemode=row["livemode"],
            seconds=row["seconds_to_recover"],
        )


def decline_class_of(conn: Connection | Session, case_id: int | None) -> str | None:
    """The case's decline class as the roll-ups key it (None: the row has no case)."""
    if case_id is None:
        return None
    found = conn.execute(select(DunningCase.decline_class).where(DunningCase.id == case_id)).first()
    if found is None:
        return None
    return found[0] or UNKNOWN_CLASS


def roll_up_orm_insert(conn: Connection, entry: LedgerEntry) -> None:
    """A ledger row added through the ORM (a fixture, a console session): rolled up like any other."""
    row = {column.key: getattr(entry, column.key) for column in LedgerEntry.__table__.columns}
    roll_up(conn, row, decline_class_of(conn, entry.case_id))


def bucket_sql(column: str, edges: tuple[int, ...] = DURATION_EDGES) -> str:
    """A SQL expression giving `column`'s bucket: a binary search as nested CASEs (8 tests, not 200)."""

    def search(low: int, high: int) -> str:
        if high - low == 1:
            return str(low)
        mid = (low + high) // 2
        return f"CASE WHEN {column} < {edges[mid]} THEN {search(low, mid)} ELSE {search(mid, high)} END"

    return search(0, len(edges))


def rebuild_statements(dialect: str) -> list[str]:
    """The SQL that empties both roll-ups and refills them from the ledger (run in one transaction)."""
    day = "CAST(l.recovered_at AS DATE)" if dialect == "postgresql" else "date(l.recovered_at)"
    decline = f"CASE WHEN c.id IS NULL THEN '' ELSE COALESCE(c.decline_class, '{UNKNOWN_CLASS}') END"
    dims = (
        f"{day}, l.provider, l.currency, l.livemode, l.kind, COALESCE(l.attribution, ''), {decline}, "
        "COALESCE(l.settlement_status, ''), COALESCE(l.settled_currency, '')"
    )
    return [
        "DELETE FROM recovery_ledger_daily",
        "DELETE FROM recovery_durations_daily",
        f"""INSERT INTO recovery_ledger_daily (day, provider, currency, livemode, kind, attribution, decline_class,
            settlement_status, settled_currency, entries, amount, settled_amount, settled_fee, settled_net)
        SELECT {dims}, COUNT(*), SUM(l.amount), COALESCE(SUM(l.settled_amount), 0),
            COALESCE(SUM(l.settled_fee), 0), COALESCE(SUM(l.settled_net), 0)
        FROM recovery_ledger l LEFT JOIN dunning_cases c ON c.id = l.case_id
        GROUP BY {dims}""",
        f"""INSERT INTO recovery_durations_daily (day, provider, currency, livemode, bucket, recoveries)
        SELECT {day}, l.provider, l.currency, l.livemode, {bucket_sql("l.seconds_to_recover")}, COUNT(*)
        FROM recovery_ledger l
        WHERE l.kind = '{LedgerKind.RECOVERY.value}' AND l.seconds_to_recover IS NOT NULL
        GROUP BY 1, 2, 3, 4, 5""",
    ]


@dataclass(frozen=True)
class Rebuilt:
    """What a rebuild wrote."""

    ledger_rows: int
    daily_rows: int
    duration_rows: int


def rebuild(session: Session) -> Rebuilt:
    """Recompute both roll-ups from the ledger, in the caller's transaction.

    PostgreSQL: the ledger is locked against writers (SHARE mode; readers go on) so no row is written
    between the DELETE and the INSERT ... SELECT. SQLite: the DELETE takes the database's write lock.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text("LOCK TABLE recovery_ledger IN SHARE MODE"))
    for statement in rebuild_statements(dialect):
        session.execute(text(statement))

    def count(table: str) -> int:
        return int(session.scalar(text(f"SELECT COUNT(*) FROM {table}")) or 0)

    return Rebuilt(count("recovery_ledger"), count("recovery_ledger_daily"), count("recovery_durations_daily"))
