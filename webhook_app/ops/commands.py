"""The core operator commands: `doctor` and `campaign`.

Each prints a clear error and exits non-zero when it cannot do its job, and never prints a secret.
Provider-specific commands (`portal setup`, `stripe register-endpoint`, `events sync`) live in the
provider's package.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import click
from flask.cli import with_appcontext

from webhook_app.errors import RecoveryError
from webhook_app.ops.output import fail, needs_database, scrubbed
from webhook_app.services import services


@contextmanager
def _quiet_logs() -> Iterator[None]:
    """The app's log lines stay out of the doctor's table: every problem they would tell is a line in it."""
    logger = logging.getLogger("webhook_app")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


@click.command("doctor")
@with_appcontext
def doctor_command() -> None:
    """Check every setting and external system; print ✓/✗ with the fix for each ✗ (exit 1 if any).

    Always runs and reports, whatever is broken (the database, the configuration, production included).
    """
    from webhook_app import readiness
    from webhook_app.ops.doctor import FAIL, render, run_checks

    svc = services()
    with _quiet_logs():
        checks = run_checks(svc)
    click.echo(render(checks))
    failed = sum(c.status == FAIL for c in checks)
    if svc.settings.is_production and readiness.configuration_problems(svc.settings, svc.providers.values()):
        click.echo("\nAPP_ENV=production: the web and worker processes will not start until the ✗ lines are fixed")
    if failed:
        click.echo(f"\n{failed} problem(s) to fix", err=True)
        sys.exit(1)
    click.echo("\neverything needed is in place")


@click.command("campaign")
@click.option("--provider", help="Only this billing provider's customers (default: every enabled one).")
@click.option("--dry-run", is_flag=True, help="Print who would get which message; send nothing, write nothing.")
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, writable=True),
    help="Write customer_id, invoice_id, update_url, amount_due, currency to this file instead of sending.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Message at most N customers this run.")
@click.option(
    "--cooldown-days",
    type=click.FloatRange(min=0),
    default=3.0,
    show_default=True,
    help="Skip customers messaged (by a campaign or the worker) within this many days.",
)
@click.option(
    "--concurrency", type=click.IntRange(min=1, max=64), default=8, show_default=True, help="Sending threads."
)
@click.option(
    "--stripe-rate",
    type=click.FloatRange(min=0.1),
    help="Stripe requests per second, shared with the other processes [default: 25 in test mode, 100 live].",
)
@click.option(
    "--messenger-rate",
    type=click.FloatRange(min=0.1),
    help="Email tool requests per second [default: LOOPS_RATE_PER_SECOND, 10].",
)
@with_appcontext
@needs_database
def campaign_command(
    provider: str | None,
    dry_run: bool,
    csv_path: str | None,
    limit: int | None,
    cooldown_days: float,
    concurrency: int,
    stripe_rate: float | None,
    messenger_rate: float | None,
) -> None:
    """Message every customer with unpaid, failed invoices once (resumable; see the README)."""
    from webhook_app.ops.campaign import CampaignOptions, run_campaign

    svc = services()
    if dry_run and csv_path:
        raise click.UsageError("--dry-run and --csv are alternatives: pick one")
    if provider is not None and provider not in svc.providers:
        raise click.BadParameter(f"one of {', '.join(svc.providers)}", param_hint="--provider")
    options = CampaignOptions(
        provider=provider,
        dry_run=dry_run,
        csv_path=csv_path,
        limit=limit,
        cooldown=timedelta(days=cooldown_days),
        concurrency=concurrency,
        stripe_rate=stripe_rate,
        messenger_rate=messenger_rate,
    )
    if not dry_run and not csv_path:
        click.echo(f"campaign: messages go through the outbox and {svc.messenger.name}", err=True)
    try:
        report = run_campaign(svc, options, echo=click.echo, progress_stream=sys.stderr)
    except OSError as exc:
        raise fail(svc, f"cannot write {csv_path}: {exc.strerror}") from None
    except RecoveryError as exc:
        raise fail(svc, f"campaign stopped before messaging anyone: {exc}") from None
    for line in report.summary():
        click.echo(scrubbed(svc, line))
    if report.stopped:
        sys.exit(1)


def register(cli: click.Group) -> None:
    """Attach the core operator commands to the app's CLI."""
    cli.add_command(doctor_command)
    cli.add_command(campaign_command)
