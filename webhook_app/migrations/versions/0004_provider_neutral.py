"""provider-neutral core: every row carries its billing provider; ids unique per provider

- events: `provider`; `stripe_id` -> `event_id`, `stripe_created` -> `occurred_at`; unique (provider, event_id)
- dunning_cases: `provider`, `customer_country`; unique (provider, invoice_id); index (provider, customer_id)
- notifications: `provider` (of the case); the email tool's columns are `messenger*`; `update_link_id`;
  status `cancelled` is spelled `canceled` like every other status
- link_clicks: `provider`, `update_link_id`
- recovery_ledger: `provider`; unique (provider, entry_key); attribution `stripe_retry` -> `provider_retry`
- campaign_contacts is dropped: the campaign puts messages in the notifications outbox like the worker
Existing rows are Stripe's.

Revision ID: 0004
Revises: 0003
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# SQLite keeps the old unique constraints unnamed: a naming convention lets batch mode find them.
SQLITE_NAMES = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _old_unique(table: str, column: str) -> str:
    """The name the 0001 unique constraint has on this database."""
    if op.get_bind().dialect.name == "postgresql":
        return f"{table}_{column}_key"  # PostgreSQL's own default name
    return f"uq_{table}_{column}"


def _add_provider(batch_op: Any) -> None:
    # Filled for existing rows by a server default that `_finish` drops: new rows must always say
    # which provider they belong to.
    batch_op.add_column(sa.Column("provider", sa.String(length=20), nullable=False, server_default="stripe"))


def _finish(table: str, unique: tuple[str, list[str]] | None = None) -> None:
    """Second pass over `table`: drop the provider default, create the new unique constraint.

    A separate batch on purpose: on SQLite, a unique constraint created in the same batch that adds
    or renames its columns is silently left out of the rebuilt table.
    """
    with op.batch_alter_table(table) as batch_op:
        batch_op.alter_column("provider", server_default=None, existing_type=sa.String(length=20))
        if unique:
            batch_op.create_unique_constraint(unique[0], unique[1])


def upgrade() -> None:
    with op.batch_alter_table("events", naming_convention=SQLITE_NAMES) as batch_op:
        _add_provider(batch_op)
        batch_op.alter_column("stripe_id", new_column_name="event_id", existing_type=sa.String(length=255))
        batch_op.alter_column("stripe_created", new_column_name="occurred_at", existing_type=sa.DateTime())
        batch_op.drop_constraint(_old_unique("events", "stripe_id"), type_="unique")
    _finish("events", ("uq_events_provider_event_id", ["provider", "event_id"]))

    with op.batch_alter_table("dunning_cases", naming_convention=SQLITE_NAMES) as batch_op:
        _add_provider(batch_op)
        batch_op.add_column(sa.Column("customer_country", sa.String(length=2), nullable=True))
        batch_op.drop_constraint(_old_unique("dunning_cases", "invoice_id"), type_="unique")
        batch_op.drop_index("ix_dunning_cases_customer_id")
    _finish("dunning_cases", ("uq_dunning_cases_provider_invoice_id", ["provider", "invoice_id"]))
    op.create_index("ix_dunning_cases_customer", "dunning_cases", ["provider", "customer_id"])

    with op.batch_alter_table("notifications") as batch_op:
        batch_op.alter_column("provider", new_column_name="messenger", existing_type=sa.String(length=20))
        batch_op.alter_column(
            "provider_message_id", new_column_name="messenger_message_id", existing_type=sa.String(length=255)
        )
        batch_op.alter_column("portal_session_id", new_column_name="update_link_id", existing_type=sa.String(255))
    with op.batch_alter_table("notifications") as batch_op:
        _add_provider(batch_op)
    _finish("notifications")
    op.execute("UPDATE notifications SET status = 'canceled' WHERE status = 'cancelled'")

    with op.batch_alter_table("link_clicks") as batch_op:
        _add_provider(batch_op)
        batch_op.alter_column("portal_session_id", new_column_name="update_link_id", existing_type=sa.String(255))
    _finish("link_clicks")

    with op.batch_alter_table("recovery_ledger", naming_convention=SQLITE_NAMES) as batch_op:
        _add_provider(batch_op)
        batch_op.drop_constraint(_old_unique("recovery_ledger", "entry_key"), type_="unique")
    _finish("recovery_ledger", ("uq_recovery_ledger_provider_entry_key", ["provider", "entry_key"]))
    op.execute("UPDATE recovery_ledger SET attribution = 'provider_retry' WHERE attribution = 'stripe_retry'")

    op.drop_index("ix_campaign_contacts_last_sent_at", table_name="campaign_contacts")
    op.drop_table("campaign_contacts")


def downgrade() -> None:
    op.create_table(
        "campaign_contacts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("sends", sa.Integer(), nullable=False),
        sa.Column("claim_token", sa.String(length=36), nullable=True),
        sa.Column("locked_until", sa.DateTime(), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("attempt_started_at", sa.DateTime(), nullable=True),
        sa.Column("last_sent_at", sa.DateTime(), nullable=True),
        sa.Column("invoice_ids", sa.Text(), nullable=True),
        sa.Column("provider", sa.String(length=20), nullable=True),
        sa.Column("provider_message_id", sa.String(length=255), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("run_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("customer_id"),
    )
    op.create_index("ix_campaign_contacts_last_sent_at", "campaign_contacts", ["last_sent_at"])
    # Only Stripe rows can go back to the single-provider schema.
    for table in ("events", "dunning_cases", "notifications", "link_clicks", "recovery_ledger"):
        op.execute(f"DELETE FROM {table} WHERE provider <> 'stripe'")
    op.execute("UPDATE recovery_ledger SET attribution = 'stripe_retry' WHERE attribution = 'provider_retry'")
    with op.batch_alter_table("recovery_ledger") as batch_op:
        batch_op.drop_constraint("uq_recovery_ledger_provider_entry_key", type_="unique")
        batch_op.drop_column("provider")
    with op.batch_alter_table("recovery_ledger") as batch_op:
        batch_op.create_unique_constraint(_old_unique("recovery_ledger", "entry_key"), ["entry_key"])
    with op.batch_alter_table("link_clicks") as batch_op:
        batch_op.alter_column("update_link_id", new_column_name="portal_session_id", existing_type=sa.String(255))
        batch_op.drop_column("provider")
    op.execute("UPDATE notifications SET status = 'cancelled' WHERE status = 'canceled'")
    with op.batch_alter_table("notifications") as batch_op:
        batch_op.drop_column("provider")
    with op.batch_alter_table("notifications") as batch_op:
        batch_op.alter_column("update_link_id", new_column_name="portal_session_id", existing_type=sa.String(255))
        batch_op.alter_column(
            "messenger_message_id", new_column_name="provider_message_id", existing_type=sa.String(length=255)
        )
        batch_op.alter_column("messenger", new_column_name="provider", existing_type=sa.String(length=20))
    op.drop_index("ix_dunning_cases_customer", table_name="dunning_cases")
    with op.batch_alter_table("dunning_cases") as batch_op:
        batch_op.drop_constraint("uq_dunning_cases_provider_invoice_id", type_="unique")
        batch_op.drop_column("customer_country")
        batch_op.drop_column("provider")
    with op.batch_alter_table("dunning_cases") as batch_op:
        batch_op.create_unique_constraint(_old_unique("dunning_cases", "invoice_id"), ["invoice_id"])
        batch_op.create_index("ix_dunning_cases_customer_id", ["customer_id"])
    with op.batch_alter_table("events") as batch_op:
        batch_op.drop_constraint("uq_events_provider_event_id", type_="unique")
        batch_op.alter_column("occurred_at", new_column_name="stripe_created", existing_type=sa.DateTime())
        batch_op.alter_column("event_id", new_column_name="stripe_id", existing_type=sa.String(length=255))
        batch_op.drop_column("provider")
    with op.batch_alter_table("events") as batch_op:
        batch_op.create_unique_constraint(_old_unique("events", "stripe_id"), ["stripe_id"])
