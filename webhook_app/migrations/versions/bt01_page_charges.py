"""page_charges: the charges our own update pages ask a provider for (Braintree's retry of a past-due subscription)

Braintree's `subscription.retry_charge` is not idempotent, so each submission of the card form is recorded
before anything is charged: unique on the form it came from, and at most one live (started / charging /
charged) row per dunning case, by a partial unique index (SQLite and PostgreSQL both have them).

Revision ID: bt01
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "bt01"
down_revision = "0004"
branch_labels = None
depends_on = None

# The same text as webhook_app.models.PAGE_CHARGE_LIVE_SQL, written out: a migration must not change
# when the code it once matched does.
LIVE = "status IN ('charged', 'charging', 'started')"


def upgrade() -> None:
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "page_charges",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("case_id", big_id, sa.ForeignKey("dunning_cases.id"), nullable=False),
        sa.Column("form_key", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("payment_method_token", sa.String(length=255), nullable=True),
        sa.Column("card_label", sa.String(length=100), nullable=True),
        sa.Column("before_transaction_id", sa.String(length=255), nullable=True),
        sa.Column("transaction_id", sa.String(length=255), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("form_key", name="uq_page_charges_form_key"),
    )
    op.create_index("ix_page_charges_case", "page_charges", ["case_id", "created_at"])
    op.create_index(
        "uq_page_charges_live_case",
        "page_charges",
        ["case_id"],
        unique=True,
        sqlite_where=sa.text(LIVE),
        postgresql_where=sa.text(LIVE),
    )


def downgrade() -> None:
    op.drop_index("uq_page_charges_live_case", table_name="page_charges")
    op.drop_index("ix_page_charges_case", table_name="page_charges")
    op.drop_table("page_charges")
