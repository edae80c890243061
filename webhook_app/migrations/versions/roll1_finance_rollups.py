"""daily roll-ups of the recovery ledger, backfilled from it

- recovery_ledger_daily: the ledger summed per UTC day, provider, currency, mode, kind, attribution,
  decline class and settlement (what the finance dashboard filters and groups by)
- recovery_durations_daily: each day's recoveries counted by time to recover, in ~10 % buckets
- ix_recovery_ledger_durations: reads the exact percentile within one bucket
- ix_dunning_cases_closed gains the columns the lost-case figures read (PostgreSQL: INCLUDE, so a year
  of lost cases is read from the index alone), and ix_dunning_cases_closed_at (closed_at, id) serves
  the newest page of lost cases without sorting all of them
Both tables are filled from the existing ledger here; from now on `webhook_app.ledger` adds to them in
the transaction of every ledger write, and `webhook-app finance rebuild-rollups` recomputes them. The
SQL below is `webhook_app.rollups.rebuild_statements` as of this revision (a migration does not import
the app's code, which moves on).

Revision ID: roll1
Revises: ops1
"""

import sqlalchemy as sa
from alembic import op

revision = "roll1"
down_revision = "ops1"
branch_labels = None
depends_on = None

# webhook_app.rollups.DURATION_EDGES
EDGES = tuple(sorted({0, *(int(1.1**i) for i in range(210))}))


def _bucket(column: str) -> str:
    def search(low: int, high: int) -> str:
        if high - low == 1:
            return str(low)
        mid = (low + high) // 2
        return f"CASE WHEN {column} < {EDGES[mid]} THEN {search(low, mid)} ELSE {search(mid, high)} END"

    return search(0, len(EDGES))


def _backfill(dialect: str) -> None:
    day = "CAST(l.recovered_at AS DATE)" if dialect == "postgresql" else "date(l.recovered_at)"
    decline = "CASE WHEN c.id IS NULL THEN '' ELSE COALESCE(c.decline_class, 'unknown') END"
    dims = (
        f"{day}, l.provider, l.currency, l.livemode, l.kind, COALESCE(l.attribution, ''), {decline}, "
        "COALESCE(l.settlement_status, ''), COALESCE(l.settled_currency, '')"
    )
    op.execute(
        f"""INSERT INTO recovery_ledger_daily (day, provider, currency, livemode, kind, attribution, decline_class,
            settlement_status, settled_currency, entries, amount, settled_amount, settled_fee, settled_net)
        SELECT {dims}, COUNT(*), SUM(l.amount), COALESCE(SUM(l.settled_amount), 0),
            COALESCE(SUM(l.settled_fee), 0), COALESCE(SUM(l.settled_net), 0)
        FROM recovery_ledger l LEFT JOIN dunning_cases c ON c.id = l.case_id
        GROUP BY {dims}"""
    )
    op.execute(
        f"""INSERT INTO recovery_durations_daily (day, provider, currency, livemode, bucket, recoveries)
        SELECT {day}, l.provider, l.currency, l.livemode, {_bucket("l.seconds_to_recover")}, COUNT(*)
        FROM recovery_ledger l
        WHERE l.kind = 'recovery' AND l.seconds_to_recover IS NOT NULL
        GROUP BY 1, 2, 3, 4, 5"""
    )


def upgrade() -> None:
    op.create_table(
        "recovery_ledger_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("attribution", sa.String(length=20), nullable=False),
        sa.Column("decline_class", sa.String(length=30), nullable=False),
        sa.Column("settlement_status", sa.String(length=20), nullable=False),
        sa.Column("settled_currency", sa.String(length=3), nullable=False),
        sa.Column("entries", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("settled_amount", sa.BigInteger(), nullable=False),
        sa.Column("settled_fee", sa.BigInteger(), nullable=False),
        sa.Column("settled_net", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "day",
            "provider",
            "currency",
            "livemode",
            "kind",
            "attribution",
            "decline_class",
            "settlement_status",
            "settled_currency",
        ),
    )
    op.create_table(
        "recovery_durations_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("recoveries", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "provider", "currency", "livemode", "bucket"),
    )
    op.create_index(
        "ix_recovery_ledger_durations",
        "recovery_ledger",
        ["kind", "currency", "seconds_to_recover", "recovered_at"],
    )
    op.drop_index("ix_dunning_cases_closed", table_name="dunning_cases")
    op.create_index(
        "ix_dunning_cases_closed",
        "dunning_cases",
        ["status", "closed_at"],
        postgresql_include=["currency", "amount_due", "decline_class", "livemode", "provider"],
    )
    op.create_index("ix_dunning_cases_closed_at", "dunning_cases", ["closed_at", "id"])
    _backfill(op.get_bind().dialect.name)


def downgrade() -> None:
    op.drop_index("ix_dunning_cases_closed_at", table_name="dunning_cases")
    op.drop_index("ix_dunning_cases_closed", table_name="dunning_cases")
    op.create_index("ix_dunning_cases_closed", "dunning_cases", ["status", "closed_at"])
    op.drop_index("ix_recovery_ledger_durations", table_name="recovery_ledger")
    op.drop_table("recovery_durations_daily")
    op.drop_table("recovery_ledger_daily")
