"""deployment identity and each message's source event

- deployment: one row holding this deployment's id, made once by the first process that asks; it goes
  into every idempotency key sent to an email tool (staging and production may share a Loops team)
- notifications.source_event_id: the inbox event that scheduled the message (`events list` marks an
  event whose message later failed)

Revision ID: ops1
Revises: f15
"""

import sqlalchemy as sa
from alembic import op

revision = "ops1"
down_revision = "f15"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deployment",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("deployment_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("notifications") as batch_op:
        batch_op.add_column(sa.Column("source_event_id", sa.BigInteger(), nullable=True))
        batch_op.create_index("ix_notifications_source_event_id", ["source_event_id"])


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch_op:
        batch_op.drop_index("ix_notifications_source_event_id")
        batch_op.drop_column("source_event_id")
    op.drop_table("deployment")
