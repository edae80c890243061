"""The `webhook-app` commands (also `flask --app webhook_app ...`).

Commands print clear errors with a non-zero exit code and never print secrets.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

import click
from flask import Flask
from flask.cli import FlaskGroup, with_appcontext
from sqlalchemy import func, select

from webhook_app import migrate
from webhook_app.services import services

if TYPE_CHECKING:
    from webhook_app.providers.base import Provider

db_group = click.Group("db", help="Database schema.")
events_group = click.Group("events", help="The inbox of billing-system events.")


@db_group.command("upgrade")
@with_appcontext
def db_upgrade() -> None:
    """Apply database migrations (the Procfile's release phase runs this)."""
    svc = services()
    migrate.upgrade(svc.db)
    click.echo(f"database is at the latest schema ({svc.db.dialect})")


@click.command("worker")
@click.option("--once", is_flag=True, help="Process everything due now, then exit.")
@with_appcontext
def worker_command(once: bool) -> None:
    """Process the inbox and send due messages (Procfile `worker`)."""
    from webhook_app.worker import Worker

    svc = services()
    missing = svc.settings.missing_for_sending() + [
        name for p in svc.enabled_providers() for name in p.missing_for_sending()
    ]
    if missing:
        click.echo(f"warning: {', '.join(missing)} not set; messages wait (held) until it is", err=True)
    worker = Worker(svc)
    if once:
        handled = worker.drain()
        click.echo(f"processed {handled} item(s)")
        return
    # Heroku sends SIGTERM before a restart: finish the item in hand, then exit.
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    signal.signal(signal.SIGINT, lambda *_: worker.stop())
    click.echo(f"worker running with {svc.settings.worker.concurrency} thread(s); Ctrl-C to stop")
    worker.run_forever()
    click.echo("worker stopped")


@events_group.command("list")
@click.option("--status", help="Only events with this status (pending, done, ignored, failed).")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@with_appcontext
def events_list(status: str | None, limit: int, as_json: bool) -> None:
    """Show recent inbox events with their outcome and last error."""
    from webhook_app.models import Event

    svc = services()
    with svc.db.session() as s:
        query = select(Event).order_by(Event.id.desc()).limit(limit)
        if status:
            query = query.where(Event.status == status)
        rows = s.scalars(query).all()
        counts = dict(s.execute(select(Event.status, func.count()).group_by(Event.status)).all())
    for row in rows:
        item = {
            "provider": row.provider,
            "id": row.event_id,
            "type": row.type,
            "status": row.status,
            "attempts": row.attempts,
            "received_at": row.received_at.isoformat() + "Z",
            "last_error": row.last_error,
        }
        if as_json:
            click.echo(json.dumps(item))
        else:
            click.echo(
                f"{row.provider:<9} {row.event_id}  {row.type:<34} {row.status:<9} attempts={row.attempts}"
                + (f"  error: {row.last_error}" if row.last_error else "")
            )
    if not as_json:
        click.echo("totals: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))


@events_group.command("replay")
@click.option("--failed", is_flag=True, help="Replay every failed event.")
@click.argument("event_ids", nargs=-1)
@with_appcontext
def events_replay(failed: bool, event_ids: tuple[str, ...]) -> None:
    """Put stored events back in the queue; handlers are idempotent, so replays change nothing twice."""
    from webhook_app import replay

    if not failed and not event_ids:
        raise click.UsageError("give event ids or --failed")
    svc = services()
    queued, unknown = replay.requeue(svc.db, svc.clock.now(), event_ids=event_ids, failed=failed)
    for event_id in unknown:
        click.echo(f"unknown event id: {event_id}", err=True)
    click.echo(f"queued {queued} event(s); the worker processes them now")
    if unknown:
        sys.exit(1)


def register(app: Flask, providers: Iterable[Provider]) -> None:
    """Attach the commands to `app.cli` (so `flask --app webhook_app` has them too)."""
    app.cli.add_command(db_group)
    app.cli.add_command(worker_command)
    app.cli.add_command(events_group)
    from webhook_app.ops import commands as ops_commands

    ops_commands.register(app.cli)  # doctor, campaign
    from webhook_app.finance.report import report_command  # finance figures in the terminal

    app.cli.add_command(report_command)
    for provider in providers:  # e.g. Stripe's portal setup, stripe register-endpoint, events sync
        provider.register_commands(app.cli)


def main() -> None:
    """Entry point of the `webhook-app` console script."""
    from webhook_app import create_app

    group = FlaskGroup(
        create_app=create_app,
        add_version_option=False,
        help="Payment recovery: intake, worker and operator commands.",
    )
    group.main(prog_name="webhook-app")


if __name__ == "__main__":
    main()
