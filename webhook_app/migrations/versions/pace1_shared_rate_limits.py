"""shared rate limits: the next free request slot per provider and credential

- rate_limits: one row per (provider, API key digest); every process reserves its provider requests
  here, so several worker processes and a campaign keep to one limit together (`rate_slots`)

Revision ID: pace1
Revises: ops1
"""

import sqlalchemy as sa
from alembic import op

revision = "pace1"
down_revision = "roll1"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_limits",
        sa.Column("limit_key", sa.String(length=100), nullable=False),
        sa.Column("next_at", sa.Double(), nullable=False),
        sa.Column("paused_until", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("limit_key"),
    )


def downgrade() -> None:
    op.drop_table("rate_limits")
