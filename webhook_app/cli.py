"""The `webhook-app` commands (also `flask --app webhook_app ...`).

Commands print clear errors with a non-zero exit code and never print secrets. An expected failure
(database not migrated, unreachable, or at the wrong path; a provider refusing; production start-up
with an essential missing) is one line with the fix (`webhook_app.ops.output`), never a traceback.
`.env` is read first (python-dotenv, Flask's convention; `FLASK_SKIP_DOTENV=1` turns it off).
Log lines go to stderr here, so they never mix with a command's output.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO, cast

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, routes_command, shell_command, with_appcontext
from sqlalchemy import func, select

from webhook_app import migrate, readiness
from webhook_app.ops.output import guard_every_command, needs_database, problem
from webhook_app.services import services
from webhook_app.states import EventStatus, NotificationStatus

if TYPE_CHECKING:
    from webhook_app.providers.base import Provider

db_group = click.Group("db", help="Database schema.")
events_group = click.Group("events", help="The inbox of billing-system events.")
notifications_group = click.Group("notifications", help="The outbox of messages to customers.")


@db_group.command("upgrade")
@with_appcontext
def db_upgrade() -> None:
    """Apply database migrations (the Procfile's release phase runs this); the only command that
    creates a new SQLite database."""
    svc = services()
    try:
        applied = migrate.upgrade(svc.db)
    except OSError as exc:  # the SQLite directory cannot be made (a wrong path, no permission)
        raise problem(
            f"cannot create the database at {svc.db.where} ({exc.strerror})",
            "point DATABASE_URL at a writable location",
        ) from None
    if applied.created:
        click.echo(f"created a new SQLite database at {svc.db.where}")
    for revision, title in applied.revisions:
        click.echo(f"applied {revision}: {title}")
    if applied.revisions:
        click.echo(f"the database at {svc.db.where} is at the latest schema ({len(applied.revisions)} applied)")
    else:
        click.echo(f"nothing to apply: the database at {svc.db.where} is at the latest schema")


@click.command("worker")
@click.option("--once", is_flag=True, help="Process everything due now, then exit.")
@with_appcontext
def worker_command(once: bool) -> None:
    """Process the inbox and send due messages (Procfile `worker`)."""
    from webhook_app.worker import Worker

    svc = services()
    _warn(readiness.refuse_to_start(svc, "worker"))  # production: refuses, naming what is missing
    _require_database()
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


@click.command("run")
@click.option("--host", "-h", default="127.0.0.1", show_default=True, help="The interface to bind to.")
@click.option("--port", "-p", default=5000, show_default=True, help="The port to bind to.")
@with_appcontext
def run_command(host: str, port: int) -> None:
    """Serve on Flask's development server, with the embedded worker (WORKER_MODE=embedded).

    For trying things locally; `make run` and the Procfile serve with gunicorn.
    """
    from werkzeug.serving import run_simple

    from webhook_app.embedded import start_embedded

    svc = services()
    _warn(readiness.refuse_to_start(svc, "web"))
    _require_database()
    if svc.settings.worker.mode == "embedded":
        start_embedded(svc)
    else:
        click.echo("WORKER_MODE=external: run `webhook-app worker` too, or nothing is processed", err=True)
    click.echo(f"serving on http://{host}:{port} (development server; Ctrl-C to stop)")
    run_simple(host, port, current_app._get_current_object(), threaded=True, use_reloader=False)  # type: ignore[attr-defined]


def _warn(problems: list[readiness.Problem]) -> None:
    """Development goes on with problems: say each, once, on stderr."""
    for found in problems:
        click.echo(f"warning: {found.message} (fix: {found.fix})", err=True)


def _require_database() -> None:
    found = migrate.schema_problem(services().db)
    if found is not None:
        raise problem(found.message, found.fix)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() + "Z" if moment is not None else None


@events_group.command("list")
@click.option("--status", type=click.Choice([s.value for s in EventStatus]), help="Only events with this status.")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@with_appcontext
@needs_database
def events_list(status: str | None, limit: int, as_json: bool) -> None:
    """Show recent inbox events with their outcome and last error, and whether a message they
    scheduled later failed or is held."""
    from webhook_app.models import Event, Notification

    svc = services()
    with svc.db.session() as s:
        query = select(Event).order_by(Event.id.desc()).limit(limit)
        if status:
            query = query.where(Event.status == status)
        rows = s.scalars(query).all()
        counts = dict(s.execute(select(Event.status, func.count()).group_by(Event.status)).all())
        troubles: dict[int | None, list[tuple[int, str]]] = {}
        for event_row, notification_id, notification_status in s.execute(
            select(Notification.source_event_id, Notification.id, Notification.status)
            .where(
                Notification.source_event_id.in_([row.id for row in rows]),
                Notification.status.in_((NotificationStatus.FAILED, NotificationStatus.HELD)),
            )
            .order_by(Notification.id)
        ):
            troubles.setdefault(event_row, []).append((notification_id, notification_status))
    for row in rows:
        messages = troubles.get(row.id, [])
        item = {
            "provider": row.provider,
            "id": row.event_id,
            "type": row.type,
            "status": row.status,
            "attempts": row.attempts,
            "received_at": _iso(row.received_at),
            "last_error": row.last_error,
            "messages_failed": [n for n, st in messages if st == NotificationStatus.FAILED],
            "messages_held": [n for n, st in messages if st == NotificationStatus.HELD],
        }
        if as_json:
            click.echo(json.dumps(item))
            continue
        marks = "".join(f"  message {n} {st}" for n, st in messages)
        click.echo(
            f"{row.provider:<9} {row.event_id}  {row.type:<34} {row.status:<9} attempts={row.attempts}"
            + (f"  error: {row.last_error}" if row.last_error else "")
            + marks
        )
    if not as_json:
        click.echo("totals: " + (", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "no events"))
        if troubles:
            click.echo("see `webhook-app notifications list --status failed` (or held) for why")


@events_group.command("replay")
@click.option("--failed", is_flag=True, help="Replay every failed event.")
@click.argument("event_ids", nargs=-1)
@with_appcontext
@needs_database
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


@notifications_group.command("list")
@click.option(
    "--status",
    type=click.Choice([s.value for s in NotificationStatus]),
    help="Only messages with this status (failed, held and pending are the ones to look at).",
)
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@with_appcontext
@needs_database
def notifications_list(status: str | None, limit: int, as_json: bool) -> None:
    """Show recent messages to customers: invoice, customer, step, attempts, last error, next try."""
    from webhook_app import dunning
    from webhook_app.models import DunningCase, Notification
    from webhook_app.states import NOTIFICATION_DUE

    svc = services()
    with svc.db.session() as s:
        query = (
            select(Notification, DunningCase.invoice_id, DunningCase.customer_id)
            .join(DunningCase, DunningCase.id == Notification.case_id)
            .order_by(Notification.id.desc())
            .limit(limit)
        )
        if status:
            query = query.where(Notification.status == status)
        rows = s.execute(query).all()
        counts = dict(s.execute(select(Notification.status, func.count()).group_by(Notification.status)).all())
    for notification, invoice_id, customer_id in rows:
        waiting = notification.status in NOTIFICATION_DUE
        item: dict[str, Any] = {
            "id": notification.id,
            "provider": notification.provider,
            "invoice": invoice_id,
            "customer": customer_id,
            "step": dunning.template_for(notification.kind, notification.step),
            "status": notification.status,
            "attempts": notification.attempts,
            "last_error": notification.last_error,
            "next_try": _iso(notification.run_at) if waiting else None,
            "sent_at": _iso(notification.sent_at),
        }
        if as_json:
            click.echo(json.dumps(item))
            continue
        click.echo(
            f"{notification.id:>6} {notification.provider:<9} {invoice_id}  {customer_id}  {item['step']:<15} "
            f"{notification.status:<8} attempts={notification.attempts}"
            + (f"  next try: {item['next_try']}" if waiting else "")
            + (f"  error: {notification.last_error}" if notification.last_error else "")
        )
    if not as_json:
        click.echo("totals: " + (", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "no messages"))


def register(app: Flask, providers: Iterable[Provider]) -> None:
    """Attach the commands to `app.cli` (so `flask --app webhook_app` has them too)."""
    app.cli.add_command(db_group)
    app.cli.add_command(worker_command)
    app.cli.add_command(events_group)
    app.cli.add_command(notifications_group)
    from webhook_app.ops import commands as ops_commands

    ops_commands.register(app.cli)  # doctor, campaign
    from webhook_app.finance.report import report_command  # finance figures in the terminal

    app.cli.add_command(report_command)
    from webhook_app.finance.commands import finance_group  # finance rebuild-rollups

    app.cli.add_command(finance_group)
    for provider in providers:  # e.g. Stripe's portal setup, stripe register-endpoint, events sync
        provider.register_commands(app.cli)
    guard_every_command(app.cli)


class _Stderr:
    """Whatever `sys.stderr` is when a line is written (a test runner swaps it per command)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _create_app() -> Flask:
    from webhook_app import create_app

    return create_app(log_stream=cast(TextIO, _Stderr()))  # all a log handler needs of a TextIO


def build_group() -> FlaskGroup:
    """The `webhook-app` command group: the app's commands, our `run` (it starts the embedded worker),
    and Flask's `shell` and `routes`."""
    group = FlaskGroup(
        create_app=_create_app,
        add_version_option=False,
        add_default_commands=False,
        help="Payment recovery: intake, worker and operator commands.",
    )
    group.add_command(run_command)
    group.add_command(shell_command)
    group.add_command(routes_command)
    guard_every_command(group)
    return group


def main() -> None:
    """Entry point of the `webhook-app` console script."""
    build_group().main(prog_name="webhook-app")


if __name__ == "__main__":
    main()
