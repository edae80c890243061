"""`webhook-app finance ...`: operator commands for the finance figures."""

from __future__ import annotations

import time

import click
from flask.cli import with_appcontext

from webhook_app import rollups
from webhook_app.ops.output import needs_database
from webhook_app.services import services


@click.group("finance")
def finance_group() -> None:
    """Finance figures: maintenance of their daily roll-ups."""


@finance_group.command("rebuild-rollups")
@with_appcontext
@needs_database
def rebuild_rollups() -> None:
    """Recompute the ledger's daily roll-ups (what /finance reads) from the ledger itself.

    Not needed in normal operation: every ledger write updates them in its own transaction. Run it after
    loading or fixing ledger rows by hand, or restoring the ledger without them. One transaction; on
    PostgreSQL ledger writers wait for it (readers do not).
    """
    started = time.monotonic()
    with services().db.session() as session:
        done = rollups.rebuild(session)
    click.echo(
        f"rebuilt the finance roll-ups from {done.ledger_rows} ledger rows: {done.daily_rows} daily rows, "
        f"{done.duration_rows} duration rows, in {time.monotonic() - started:.1f} s"
    )
