"""decline-aware recovery: why a case's payment failed, and the team's alert outbox

Revision ID: 0008
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dunning_cases") as batch_op:
        batch_op.add_column(sa.Column("decline_class", sa.String(length=30), nullable=True))
        batch_op.add_column(sa.Column("decline_code", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("advice_code", sa.String(length=100), nullable=True))
    op.create_table(
        "team_alerts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=True),
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("period", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("run_at", sa.DateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(), nullable=True),
        sa.Column("claim_token", sa.String(length=36), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["dunning_cases.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_index("ix_team_alerts_case_id", "team_alerts", ["case_id"])
    op.create_index("ix_team_alerts_claim", "team_alerts", ["status", "run_at"])


def downgrade() -> None:
    op.drop_index("ix_team_alerts_claim", table_name="team_alerts")
    op.drop_index("ix_team_alerts_case_id", table_name="team_alerts")
    op.drop_table("team_alerts")
    with op.batch_alter_table("dunning_cases") as batch_op:
        batch_op.drop_column("advice_code")
        batch_op.drop_column("decline_code")
        batch_op.drop_column("decline_class")
