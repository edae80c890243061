"""finance review: names and settled figures on ledger rows; personal-data retention; month views

- recovery_ledger: `invoice_number`, `customer_name`, `customer_email` (copied from the case when a row
  is written); `settlement_status`, `settlement_id`, `settled_amount`, `settled_fee`, `settled_net`,
  `settled_currency`, `settled_exchange_rate`, `settlement_checked_at` (the balance transaction,
  filled once by the worker); indexes on `case_id` and `settlement_status`
- dunning_cases: `pii_erased_at`; index on `first_failed_at` (rates by month of first failure); a
  partial index on `closed_at` of the cases still holding personal data (the retention sweep)
Existing ledger rows get their names from their cases; their settlement stays unknown (NULL).

Revision ID: f15
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "f15"
down_revision = "0008"
branch_labels = None
depends_on = None

LEDGER_COLUMNS = (
    ("invoice_number", sa.String(length=255)),
    ("customer_name", sa.String(length=255)),
    ("customer_email", sa.String(length=320)),
    ("settlement_status", sa.String(length=20)),
    ("settlement_id", sa.String(length=255)),
    ("settled_amount", sa.BigInteger()),
    ("settled_fee", sa.BigInteger()),
    ("settled_net", sa.BigInteger()),
    ("settled_currency", sa.String(length=3)),
    ("settled_exchange_rate", sa.String(length=40)),
    ("settlement_checked_at", sa.DateTime()),
)


def upgrade() -> None:
    # Plain ADD COLUMNs (nullable, no default): no table rebuild on SQLite, no rewrite on PostgreSQL.
    for name, type_ in LEDGER_COLUMNS:
        op.add_column("recovery_ledger", sa.Column(name, type_, nullable=True))
    op.add_column("dunning_cases", sa.Column("pii_erased_at", sa.DateTime(), nullable=True))
    op.create_index("ix_recovery_ledger_case", "recovery_ledger", ["case_id"])
    op.create_index("ix_recovery_ledger_settlement", "recovery_ledger", ["settlement_status"])
    op.create_index("ix_dunning_cases_first_failed", "dunning_cases", ["first_failed_at"])
    op.create_index(
        "ix_dunning_cases_pii_expiry",
        "dunning_cases",
        ["closed_at"],
        postgresql_where=sa.text("pii_erased_at IS NULL"),
        sqlite_where=sa.text("pii_erased_at IS NULL"),
    )
    # Rows written before this revision: the names their case holds now.
    op.execute(
        "UPDATE recovery_ledger SET "
        "invoice_number = (SELECT c.invoice_number FROM dunning_cases c WHERE c.id = recovery_ledger.case_id), "
        "customer_name = (SELECT c.customer_name FROM dunning_cases c WHERE c.id = recovery_ledger.case_id), "
        "customer_email = (SELECT c.customer_email FROM dunning_cases c WHERE c.id = recovery_ledger.case_id) "
        "WHERE case_id IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_index("ix_dunning_cases_pii_expiry", table_name="dunning_cases")
    op.drop_index("ix_dunning_cases_first_failed", table_name="dunning_cases")
    op.drop_index("ix_recovery_ledger_settlement", table_name="recovery_ledger")
    op.drop_index("ix_recovery_ledger_case", table_name="recovery_ledger")
    with op.batch_alter_table("dunning_cases") as batch_op:
        batch_op.drop_column("pii_erased_at")
    with op.batch_alter_table("recovery_ledger") as batch_op:
        for name, _type in reversed(LEDGER_COLUMNS):
            batch_op.drop_column(name)
